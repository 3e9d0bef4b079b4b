//! The agent: scraping Prometheus targets and remote-writing through an on-disk queue
//! (DESIGN.md §2, FORMATS.md §6).
//!
//! Not built yet: the agent issue fills this crate. Until then the `strata` binary refuses to
//! start the agent role and says so.
