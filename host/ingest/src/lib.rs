//! Ingestion: the batch type every decoder produces, the `SampleSink` it goes into, and the
//! native protocol decoders.

pub mod prompb;
