//! A small blocking HTTP client over `ureq`: every status is an answer, not an error.

use std::time::Duration;

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body as text (lossy).
    pub body: String,
}

impl Reply {
    /// 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One keep-alive client; give each thread its own.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

/// Largest answer body read (series lookups over many series are big).
const BODY_LIMIT: u64 = 512 * 1024 * 1024;

fn read(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply, String> {
    let mut response = result.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

impl Http {
    /// A client whose every request gives up after `timeout`.
    pub fn new(timeout: Duration) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Http { agent }
    }

    /// GET `url` with query parameters.
    pub fn get(&self, url: &str, params: &[(&str, &str)]) -> Result<Reply, String> {
        let mut request = self.agent.get(url);
        for (k, v) in params {
            request = request.query(*k, *v);
        }
        read(request.call())
    }

    /// POST `body` to `url` with headers.
    pub fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, String> {
        let mut request = self.agent.post(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        read(request.send(body))
    }
}
