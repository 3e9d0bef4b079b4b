//! Ingestion: N concurrent clients POST a [`Plan`]'s bodies to a server while its CPU time is
//! counted from /proc.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::http::Http;
use crate::plan::Plan;
use crate::procfs;

/// What one ingestion run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Samples in all bodies sent.
    pub samples_sent: u64,
    /// Samples in bodies answered with a non-2xx status or not answered at all.
    pub samples_rejected: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered with a non-2xx status.
    pub rejected_requests: u64,
    /// Requests that got no answer (connection error, timeout).
    pub failed_requests: u64,
    /// The first non-2xx answer or transport error, shortened.
    pub first_rejection: Option<String>,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Server CPU time (user + system) over that time.
    pub cpu_seconds: f64,
}

impl LoadResult {
    /// Accepted samples per second of wall time.
    pub fn samples_per_second(&self) -> f64 {
        (self.samples_sent - self.samples_rejected) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU seconds per million accepted samples.
    pub fn cpu_per_million(&self) -> f64 {
        let accepted = (self.samples_sent - self.samples_rejected).max(1);
        self.cpu_seconds / accepted as f64 * 1e6
    }
}

/// How to send: where, with which headers, by how many clients.
pub struct Load<'a> {
    /// Full URL of the write endpoint.
    pub url: String,
    /// Request headers (content type and encoding).
    pub headers: &'a [(&'a str, &'a str)],
    /// Concurrent clients.
    pub clients: usize,
    /// Scrape rounds sent before all clients wait for each other. Keeps them within a few
    /// minutes of data of each other, since Prometheus refuses samples an hour older than the
    /// newest it has seen.
    pub round_scrapes: usize,
    /// The server process whose CPU time counts.
    pub pid: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

fn shorten(s: &str) -> String {
    let s = s.trim();
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Load<'_> {
    /// Sends every body of `plan`; chunk `c` goes through client `c % clients`.
    pub fn run(&self, plan: &Plan) -> LoadResult {
        let clients = self.clients.max(1);
        let round = self.round_scrapes.max(1);
        let barrier = Barrier::new(clients);
        let rejected_samples = AtomicU64::new(0);
        let rejected_requests = AtomicU64::new(0);
        let failed_requests = AtomicU64::new(0);
        let requests = AtomicU64::new(0);
        let first = Mutex::new(None::<String>);
        let ticks = procfs::clock_ticks_per_second();
        let cpu_before = procfs::cpu_ticks(self.pid).unwrap_or(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for worker in 0..clients {
                let (barrier, first) = (&barrier, &first);
                let (rejected_samples, rejected_requests, failed_requests, requests) =
                    (&rejected_samples, &rejected_requests, &failed_requests, &requests);
                scope.spawn(move || {
                    let http = Http::new(self.timeout);
                    for rounds in plan.scrapes.chunks(round) {
                        for bodies in rounds {
                            for body in bodies.iter().skip(worker).step_by(clients) {
                                requests.fetch_add(1, Ordering::Relaxed);
                                let problem = match http.post(&self.url, self.headers, &body.bytes) {
                                    Ok(reply) if reply.ok() => None,
                                    Ok(reply) => {
                                        rejected_requests.fetch_add(1, Ordering::Relaxed);
                                        Some(format!("HTTP {}: {}", reply.status, shorten(&reply.body)))
                                    }
                                    Err(e) => {
                                        failed_requests.fetch_add(1, Ordering::Relaxed);
                                        Some(format!("no answer: {}", shorten(&e)))
                                    }
                                };
                                if let Some(problem) = problem {
                                    rejected_samples.fetch_add(u64::from(body.samples), Ordering::Relaxed);
                                    first
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .get_or_insert(problem);
                                }
                            }
                        }
                        barrier.wait();
                    }
                });
            }
        });
        let elapsed = started.elapsed();
        let cpu_after = procfs::cpu_ticks(self.pid).unwrap_or(cpu_before);
        LoadResult {
            samples_sent: plan.samples,
            samples_rejected: rejected_samples.into_inner(),
            requests: requests.into_inner(),
            rejected_requests: rejected_requests.into_inner(),
            failed_requests: failed_requests.into_inner(),
            first_rejection: first.into_inner().unwrap_or_else(PoisonError::into_inner),
            elapsed,
            cpu_seconds: cpu_after.saturating_sub(cpu_before) as f64 / ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Body;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    /// A tiny HTTP/1.1 server: records every body; answers 400 to bodies starting with "bad".
    fn server() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/write", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut stream = stream;
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let answer: &[u8] = if body.starts_with(b"bad") {
                            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 8\r\n\r\nno thank"
                        } else {
                            b"HTTP/1.1 204 No Content\r\n\r\n"
                        };
                        record.lock().expect("lock").push(body);
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    #[test]
    fn every_body_once_in_order_per_chunk_and_rejections_counted() {
        let (url, seen) = server();
        // 7 scrape rounds of 5 chunks; 3 clients share them unevenly.
        let mut plan = Plan::default();
        for s in 0..7u8 {
            let bodies = (0..5u8)
                .map(|c| {
                    let bytes = if s == 3 && c == 1 {
                        b"bad".to_vec()
                    } else {
                        vec![b'a' + c, b'0' + s]
                    };
                    Body { bytes, samples: 10 }
                })
                .collect();
            plan.scrapes.push(bodies);
            plan.samples += 50;
        }
        let headers = [("Content-Type", "text/plain")];
        let result = Load {
            url,
            headers: &headers,
            clients: 3,
            round_scrapes: 2,
            pid: std::process::id(),
            timeout: Duration::from_secs(10),
        }
        .run(&plan);
        assert_eq!(result.requests, 35);
        assert_eq!(result.rejected_requests, 1);
        assert_eq!(result.samples_rejected, 10);
        assert_eq!(result.failed_requests, 0);
        assert_eq!(result.first_rejection.as_deref(), Some("HTTP 400: no thank"));
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 35);
        for c in 0..5u8 {
            let order: Vec<u8> = seen
                .iter()
                .filter(|b| b.len() == 2 && b[0] == b'a' + c)
                .map(|b| b[1])
                .collect();
            let expected: Vec<u8> = (0..7u8).filter(|s| !(*s == 3 && c == 1)).map(|s| b'0' + s).collect();
            assert_eq!(order, expected, "chunk {c} out of order");
        }
    }
}
