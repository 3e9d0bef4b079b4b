//! The web UI in a real browser: headless Chromium driven over the W3C WebDriver protocol
//! (chromedriver on 127.0.0.1), against a node loaded with a known data set. Each test asserts
//! what a person sees and saves a screenshot under `$CARGO_TARGET_TMPDIR/ui-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/install-peers installs them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use strata_e2e::{Strata, free_port, require_program};

/// How long the UI may take to show something after an action (generous: CI machines are
/// shared, and the 100k-name test waits for the server to list them all).
const WAIT: Duration = Duration::from_secs(60);

/// A chromedriver process with one browser session; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let chromium = require_program("chromium");
        let chromedriver = require_program("chromedriver");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("cannot create a profile dir");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.raw("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer /status");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Flags for a closed network and a root user: no sandbox, no background connections.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--user-data-dir={}", browser._profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_str().expect("path is UTF-8"), "args": args},
        }}});
        let reply = browser
            .raw("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("cannot start a browser session: {e}"));
        browser.session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {reply}"))
            .to_owned();
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self
                .http
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string().as_bytes()),
        };
        let mut response = response.map_err(|e| e.to_string())?;
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if response.status().as_u16() >= 400 {
            return Err(format!("{method} {path}: {}", value["value"]));
        }
        Ok(value)
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body).unwrap_or_else(|e| panic!("{e}"))["value"].take()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Polls `script` until it returns a truthy value; panics with `what` and the page text.
    fn wait(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(script, args.clone());
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.js("return document.body.innerText", json!([]));
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element matching `css`, waiting for it to exist.
    fn find(&self, css: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let path = format!("/session/{}/element", self.session);
            if let Ok(mut v) = self.raw("POST", &path, Some(json!({"using": "css selector", "value": css}))) {
                return v["value"].take();
            }
            assert!(Instant::now() < deadline, "no element matches {css}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element_id(element: &Value) -> String {
        element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("not an element reference: {element}"))
            .to_owned()
    }

    /// A real click (the browser moves the pointer and clicks) on the element matching `css`.
    fn click(&self, css: &str) {
        let id = Self::element_id(&self.find(css));
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element matching `css` as key presses.
    fn type_into(&self, css: &str, text: &str) {
        let id = Self::element_id(&self.find(css));
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Moves the mouse over `element` to `points` (offsets from its centre) with the button
    /// pressed from the second point on: one move is a hover, several are a drag.
    fn pointer(&self, element: &Value, points: &[(i64, i64)]) {
        let mut actions = Vec::new();
        for (i, (x, y)) in points.iter().enumerate() {
            actions.push(json!({"type": "pointerMove", "origin": element, "x": x, "y": y, "duration": 50}));
            if i == 0 && points.len() > 1 {
                actions.push(json!({"type": "pointerDown", "button": 0}));
            }
        }
        if points.len() > 1 {
            actions.push(json!({"type": "pointerUp", "button": 0}));
        }
        let body = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions,
        }]});
        self.cmd("POST", "/actions", Some(body));
    }

    /// Counts elements matching `css`.
    fn count(&self, css: &str) -> u64 {
        self.js("return document.querySelectorAll(arguments[0]).length", json!([css]))
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until exactly `n` elements match `css`.
    fn wait_count(&self, css: &str, n: u64) {
        self.wait(
            &format!("{n} × {css}"),
            "return document.querySelectorAll(arguments[0]).length === arguments[1]",
            json!([css, n]),
        );
    }

    /// The visible text of the first element matching `css` (empty if none).
    fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Saves a PNG of the window as `<CARGO_TARGET_TMPDIR>/ui-screenshots/<name>.png`.
    fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(data.as_str().expect("screenshot is base64 text"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&dir).expect("cannot create the screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("cannot write the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (the screenshot encoding), padding optional.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// A node with a known data set: http_requests_total (3 series), node_load1 (2) and
/// temperature (1), one sample every 15 s over the last 30 minutes.
fn loaded_node() -> Strata {
    // The tests count metrics and series exactly, so the node's own metrics (self-scrape, on by
    // default in single) would be in the way: this store holds the known data set only.
    let node = Strata::builder().arg("--self-scrape-interval").arg("0").start();
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let timestamps: Vec<i64> = (0..120).map(|i| now_ms - 30 * 60 * 1000 + i * 15_000).collect();
    let mut body = String::new();
    let mut add = |labels: Value, f: &dyn Fn(i64) -> f64| {
        let values: Vec<f64> = (0..120).map(f).collect();
        body.push_str(&json!({"metric": labels, "values": values, "timestamps": timestamps}).to_string());
        body.push('\n');
    };
    for (i, inst) in ["a", "b", "c"].into_iter().enumerate() {
        let rate = (i + 1) as f64;
        add(
            json!({"__name__": "http_requests_total", "job": "api", "instance": inst}),
            &|k| rate * 10.0 * k as f64,
        );
    }
    for inst in ["a", "b"] {
        add(
            json!({"__name__": "node_load1", "job": "node", "instance": inst}),
            &|k| 1.0 + (k as f64 / 10.0).sin(),
        );
    }
    add(json!({"__name__": "temperature", "room": "lab"}), &|k| {
        20.0 + (k % 7) as f64
    });
    let reply = node.post("/api/v1/import", "application/json", body.as_bytes());
    assert!(reply.status < 300, "import failed: {} {}", reply.status, reply.body);
    // Imported rows become searchable after the in-memory buffer is flushed.
    let seen = node.poll("/api/v1/series?match%5B%5D=%7B__name__%3D~%22.%2B%22%7D", WAIT, |r| {
        r.json()["data"].as_array().is_some_and(|a| a.len() == 6)
    });
    assert_eq!(seen.json()["data"].as_array().map(Vec::len), Some(6), "{}", seen.body);
    node
}

#[test]
fn query_page_charts_tables_and_shows_errors() {
    let node = loaded_node();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/query", node.base_url()));

    // Autocomplete offers the metric name; Tab accepts it, Enter runs the query.
    browser.type_into("#expr", "http_req");
    browser.wait(
        "the metric name suggestion",
        "return [...document.querySelectorAll('.ac-item')].some(e => e.textContent.includes('http_requests_total'))",
        json!([]),
    );
    browser.type_into("#expr", "\u{E004}");
    assert_eq!(
        browser.js("return document.querySelector('#expr').value", json!([])),
        json!("http_requests_total")
    );
    browser.type_into("#expr", "\u{E007}");

    // A chart with one line per series and a legend entry for each.
    browser.wait_count("svg.chart path.series", 3);
    assert_eq!(browser.count(".legend-item"), 3);
    assert!(
        browser.text(".legend").contains("instance=\"b\""),
        "{}",
        browser.text(".legend")
    );
    // The URL holds the query, so the view can be shared.
    let url = browser.js("return location.hash", json!([]));
    assert!(url.as_str().unwrap().contains("expr=http_requests_total"), "{url}");
    browser.screenshot("query-chart");

    // Hovering shows the values of the three series at that time.
    let overlay = browser.find("svg.chart .overlay");
    browser.pointer(&overlay, &[(300, 0)]);
    let tip = browser.wait(
        "the hover values",
        "const t = document.querySelector('.tooltip'); return t && !t.hidden && t.innerText",
        json!([]),
    );
    assert_eq!(tip.as_str().unwrap().matches("http_requests_total").count(), 3, "{tip}");

    // Dragging across the chart zooms in: the range becomes the dragged span, in seconds.
    browser.pointer(&overlay, &[(100, 0), (250, 0), (400, 0)]);
    let hash = browser.wait(
        "the zoomed range in the URL",
        "return /range=\\d+s/.test(location.hash) && location.hash",
        json!([]),
    );
    assert!(hash.as_str().unwrap().contains("end="), "{hash}");
    browser.wait_count("svg.chart path.series", 3);

    // Stacked keeps the three series.
    browser.click("#stacked");
    browser.wait(
        "stacked in the URL",
        "return location.hash.includes('stacked=1') && document.querySelectorAll('svg.chart path.series').length === 3",
        json!([]),
    );

    // The table view lists the three series with their points.
    browser.click(".tab[data-tab=table]");
    browser.wait_count(".grid-table tbody tr", 3);
    assert!(
        browser.text(".grid-table").contains("http_requests_total{"),
        "{}",
        browser.text(".grid-table")
    );

    // Back to "now" (the zoom fixed the end time), then an instant query of a sum: one row
    // with the value of the last sample.
    browser.click("#now");
    browser.wait("end cleared", "return !location.hash.includes('end=')", json!([]));
    browser.js("document.querySelector('#expr').value = ''", json!([]));
    browser.type_into("#expr", "sum(http_requests_total)\u{E007}");
    browser.wait_count(".grid-table tbody tr", 1);
    browser.click("input[name=mode][value=instant]");
    browser.wait(
        "an instant vector result",
        "return location.hash.includes('mode=instant') && document.querySelector('#qstats')?.innerText.includes('vector')",
        json!([]),
    );
    browser.wait_count(".grid-table tbody tr", 1);
    // 10 + 20 + 30 per step over 119 steps: the sum at the last sample.
    assert_eq!(browser.text(".grid-table tbody td.num"), "7140");

    // JSON view shows the raw result.
    browser.click(".tab[data-tab=json]");
    browser.wait(
        "the JSON view",
        "const p = document.querySelector('pre.json'); return p && p.textContent.includes('\"resultType\"')",
        json!([]),
    );

    // A bad query shows the server's error beside the editor.
    browser.js("document.querySelector('#expr').value = ''", json!([]));
    browser.type_into("#expr", "sum(rate(\u{E007}");
    let shown = browser.wait(
        "the error message",
        "const e = document.querySelector('#qerror'); return e && !e.hidden && e.innerText",
        json!([]),
    );
    assert!(shown.as_str().unwrap().contains("Error"), "{shown}");
    browser.screenshot("query-error");
}

#[test]
fn explore_drills_into_a_metric_and_charts_a_series() {
    let node = loaded_node();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/explore", node.base_url()));

    // Every metric with its series count, most series first.
    browser.wait_count(".metric-row", 3);
    let first = browser.text(".vrow:first-child .metric-row");
    assert!(first.contains("http_requests_total") && first.contains('3'), "{first}");

    // The filter box narrows the list.
    browser.type_into("#metric-filter", "load");
    browser.wait_count(".metric-row", 1);
    browser.click(".metric-row");
    browser.wait(
        "the metric's series count",
        "return document.querySelector('#detail h2')?.innerText.includes('2 series')",
        json!([]),
    );
    assert_eq!(browser.count(".series-row"), 2);

    // Drill into a label: its values with counts; a value narrows the series.
    browser.click(".label-name[href*='label=instance']");
    browser.wait_count(".value-row", 2);
    browser.click(".value-row");
    browser.wait_count(".series-row", 1);
    browser.screenshot("explore");

    // One click charts the series.
    browser.click(".chart-one");
    browser.wait_count("svg.chart path.series", 1);
    assert!(
        browser.text(".legend").contains("node_load1"),
        "{}",
        browser.text(".legend")
    );

    // A selection of two series charts those two.
    browser.goto(&format!("{}/#/explore?metric=http_requests_total", node.base_url()));
    browser.wait_count(".series-row", 3);
    browser.click(".vrow[data-i='0'] input[type=checkbox]");
    browser.click(".vrow[data-i='2'] input[type=checkbox]");
    assert_eq!(browser.text("#chart-selected"), "Chart selected (2)");
    browser.click("#chart-selected");
    browser.wait_count("svg.chart path.series", 2);
    let legend = browser.text(".legend");
    assert!(
        legend.contains("instance=\"a\"") && legend.contains("instance=\"c\""),
        "{legend}"
    );
}

#[test]
fn cardinality_and_status_pages_show_the_node() {
    let node = loaded_node();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/cardinality", node.base_url()));
    let total = browser.wait(
        "the total series",
        "return document.querySelector('#total-series')?.innerText",
        json!([]),
    );
    assert_eq!(total, json!("6"));
    let rows = browser.text(".card-grid");
    assert!(rows.contains("http_requests_total"), "{rows}");
    assert!(rows.contains("instance=a") || rows.contains("instance=\"a\""), "{rows}");
    browser.screenshot("cardinality");

    // A row links into Explore for that metric.
    browser.click(".card-grid a[href*='metric=http_requests_total']");
    browser.wait(
        "the explored metric",
        "return document.querySelector('#detail h2')?.innerText.includes('3 series')",
        json!([]),
    );

    browser.click("nav a[data-page=status]");
    let build = browser.wait(
        "the build info",
        "return document.querySelector('#sout table')?.innerText",
        json!([]),
    );
    assert!(build.as_str().unwrap().contains("strata"), "{build}");

    browser.click("nav a[data-page=targets]");
    browser.wait(
        "the targets page",
        "return document.querySelector('#tout')?.innerText.includes('target')",
        json!([]),
    );
    // The theme button switches between light and dark.
    let before = browser.js("return document.documentElement.dataset.theme", json!([]));
    browser.click("#theme");
    let after = browser.js("return document.documentElement.dataset.theme", json!([]));
    assert_ne!(before, after);
    assert!(after == json!("dark") || after == json!("light"), "{after}");

    browser.click("nav a[data-page=plugins]");
    browser.wait(
        "the plugins page",
        "return document.querySelector('#pout')?.innerText.includes('No plugins are configured')",
        json!([]),
    );
    // The /vmui/ bookmark lands on the UI.
    browser.goto(&format!("{}/vmui/", node.base_url()));
    browser.wait(
        "the UI after /vmui/",
        "return document.querySelector('nav a[data-page=query]') !== null",
        json!([]),
    );
}

#[test]
fn status_page_shows_the_effective_configuration_and_targets_the_self_scrape() {
    // Self-scrape stays on (the single role's default, here every second) and a remote-write
    // URL carries a password that must never reach the page.
    let node = Strata::builder()
        .arg("--self-scrape-interval")
        .arg("1s")
        .arg("--remote-write-url")
        .arg("http://ui:hunter2@127.0.0.1:9/api/v1/write")
        .start();
    let browser = Browser::start();
    browser.goto(&format!("{}/#/status", node.base_url()));
    let config = browser.wait(
        "the configuration",
        "return document.querySelector('#config-toml')?.innerText",
        json!([]),
    );
    let config = config.as_str().unwrap_or_default();
    for want in [
        "[storage]",
        "[agent]",
        &node.data_dir().display().to_string(),
        "self_scrape_interval = \"1s\"",
        "http://ui:<redacted>@127.0.0.1:9/api/v1/write",
    ] {
        assert!(config.contains(want), "the configuration lacks {want:?}:\n{config}");
    }
    assert!(!config.contains("hunter2"), "a password reached the page:\n{config}");
    browser.js("document.getElementById('config-toml').scrollIntoView()", json!([]));
    browser.screenshot("status-config");

    // The node scrapes itself as job "strata", and the Targets page says it is up.
    let up = node.poll("/api/v1/targets", WAIT, |r| {
        r.body.contains("\"scrapePool\":\"strata\"") && r.body.contains("\"health\":\"up\"")
    });
    assert!(up.body.contains("\"health\":\"up\""), "{}", up.body);
    browser.click("nav a[data-page=targets]");
    browser.wait(
        "the self-scrape target up",
        "return [...document.querySelectorAll('#tout tbody tr')].some((r) => r.innerText.includes('strata') && r.querySelector('.state-up'))",
        json!([]),
    );
    browser.screenshot("targets-self-scrape");
}

#[test]
#[allow(clippy::print_stdout, reason = "the test reports its timings (never asserted on)")]
fn explore_stays_responsive_with_100k_metric_names() {
    const NAMES: usize = 100_000;
    // Exactly NAMES metric names are expected: no self-scrape series.
    let node = Strata::builder().arg("--self-scrape-interval").arg("0").start();
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    for chunk in 0..10 {
        let mut body = String::new();
        for i in chunk * NAMES / 10..(chunk + 1) * NAMES / 10 {
            body.push_str(&format!(
                "{{\"metric\":{{\"__name__\":\"big_{i:06}\",\"job\":\"big\"}},\"values\":[1],\"timestamps\":[{}]}}\n",
                now_ms - 60_000
            ));
        }
        let reply = node.post("/api/v1/import", "application/json", body.as_bytes());
        assert!(reply.status < 300, "import failed: {} {}", reply.status, reply.body);
    }
    let listed = node.poll("/api/v1/label/__name__/values", WAIT, |r| {
        r.json()["data"].as_array().is_some_and(|a| a.len() == NAMES)
    });
    assert_eq!(listed.json()["data"].as_array().map(Vec::len), Some(NAMES));

    let browser = Browser::start();
    let started = Instant::now();
    browser.goto(&format!("{}/#/explore", node.base_url()));
    browser.wait(
        "the metric count",
        "return document.querySelector('#metric-count')?.innerText === '(100000)'",
        json!([]),
    );
    println!("100k metric names listed {:?} after navigation", started.elapsed());
    // Only the rows in view exist in the page.
    let rows = browser.count(".metric-row");
    assert!((10..100).contains(&rows), "{rows} rows in the DOM");

    // Scrolling to the end renders the last rows, still only a window of them.
    let scrolled = Instant::now();
    browser.js(
        "const l = document.querySelector('.vlist.metric-list'); l.scrollTop = l.scrollHeight; l.dispatchEvent(new Event('scroll'))",
        json!([]),
    );
    browser.wait(
        "the last row after scrolling",
        "return document.querySelector('.vrow[data-i=\"99999\"] .metric-row') !== null",
        json!([]),
    );
    println!("scrolled to the end of 100k rows in {:?}", scrolled.elapsed());
    assert!(browser.count(".metric-row") < 100);

    // The filter narrows 100k names to one.
    let filtered = Instant::now();
    browser.type_into("#metric-filter", "099999");
    browser.wait_count(".metric-row", 1);
    println!("filtered 100k names in {:?}", filtered.elapsed());
    assert!(browser.text(".metric-row").contains("big_099999"));
    browser.screenshot("explore-100k");
}
