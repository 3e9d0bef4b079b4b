//! The benchmark harness. Being built by the benchmark issue.

fn main() {
    eprintln!("strata-bench is not built yet");
    std::process::exit(1);
}
