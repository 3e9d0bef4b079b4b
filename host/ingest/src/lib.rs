//! Ingestion: the batch type every decoder produces, the `SampleSink` it goes into, and the
//! native protocol decoders. Being filled by the ingestion issue.
