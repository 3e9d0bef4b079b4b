//! The error every decoder and validator returns, with the HTTP status it maps to.

/// Why a request (or its rows) was refused. The string form is the `reason` label of
/// `strata_rows_rejected_total`, so the set is closed and small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The body could not be decompressed.
    Decompress,
    /// The body or its decompressed form is over a size limit.
    TooLarge,
    /// The protobuf is malformed.
    Protobuf,
    /// A JSON line is malformed.
    Json,
    /// A text exposition line is malformed.
    Exposition,
    /// A label name is not valid.
    InvalidLabelName,
    /// A label value (or name) is not valid UTF-8 or a symbol reference is out of range.
    InvalidLabelValue,
    /// The same label name twice in one series.
    DuplicateLabel,
    /// More labels than allowed in one series.
    TooManyLabels,
    /// A label name or value is longer than allowed.
    LabelTooLong,
    /// A series has no labels.
    NoLabels,
    /// The samples of a series are not in time order.
    UnsortedSamples,
    /// A timestamp is too far in the future.
    FutureTimestamp,
    /// A timestamp is older than retention.
    TooOld,
    /// Native histograms are not accepted.
    NativeHistogram,
    /// The Content-Type or Content-Encoding is not supported.
    UnsupportedMediaType,
    /// A query parameter (such as `extra_label`) is malformed.
    BadParameter,
}

impl RejectReason {
    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::Decompress => "decompress",
            RejectReason::TooLarge => "too_large",
            RejectReason::Protobuf => "protobuf",
            RejectReason::Json => "json",
            RejectReason::Exposition => "exposition",
            RejectReason::InvalidLabelName => "invalid_label_name",
            RejectReason::InvalidLabelValue => "invalid_label_value",
            RejectReason::DuplicateLabel => "duplicate_label",
            RejectReason::TooManyLabels => "too_many_labels",
            RejectReason::LabelTooLong => "label_too_long",
            RejectReason::NoLabels => "no_labels",
            RejectReason::UnsortedSamples => "unsorted_samples",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::NativeHistogram => "native_histogram",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::BadParameter => "bad_parameter",
        }
    }
}

/// A refused ingestion request. The message says what was wrong and where (series index, label,
/// line number, byte offset) and never echoes more than a short excerpt of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    /// Why, for metrics and status mapping.
    pub reason: RejectReason,
    /// What and where, for the client.
    pub message: String,
}

impl IngestError {
    /// A new error.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The HTTP status this error answers with: 413 for size limits, 415 for unsupported
    /// content types, 400 for everything else (bad input that a retry will not fix).
    pub fn status_code(&self) -> u16 {
        match self.reason {
            RejectReason::TooLarge => 413,
            RejectReason::UnsupportedMediaType => 415,
            _ => 400,
        }
    }
}

impl From<crate::batch::BatchOverflow> for IngestError {
    fn from(err: crate::batch::BatchOverflow) -> Self {
        IngestError::new(RejectReason::TooLarge, err.to_string())
    }
}
