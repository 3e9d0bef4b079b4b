//! The built-in web UI: the static files under `web/`, embedded into the binary when it is
//! built, so one binary serves everything and the UI works without network access.
//!
//! The pages keep their state in the URL fragment (`/#/query?...`), so the server only serves
//! `/` and the assets under `/ui/`. `/vmui` and `/vmui/` redirect to `/` so bookmarks made
//! for VictoriaMetrics keep working.
//!
//! File names carry no content hash (there is no build step), so assets are served with an
//! `ETag` and `Cache-Control: no-cache`: browsers revalidate and get a 304 while the binary is
//! unchanged, and never run a stale script after an upgrade.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::ApiError;

/// One embedded file.
struct Asset {
    /// The name under `/ui/` (or `index.html` for `/`).
    name: &'static str,
    /// The Content-Type it is served with.
    content_type: &'static str,
    /// The file's bytes.
    body: &'static [u8],
}

/// Every file of the UI. Adding a file to `web/` means adding it here too; the test below
/// checks that `index.html` references only files listed here.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../web/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/api.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/chart.js"),
    },
    Asset {
        name: "promql.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/promql.js"),
    },
    Asset {
        name: "query.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/query.js"),
    },
    Asset {
        name: "explore.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/explore.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../../web/favicon.svg"),
    },
];

/// The UI's routes: `/`, `/ui/{file}`, and the `/vmui` redirects.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
        .route("/vmui", get(to_root))
        .route("/vmui/", get(to_root))
        .route("/favicon.ico", get(favicon))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn favicon(headers: HeaderMap) -> Response {
    serve("favicon.svg", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

async fn to_root() -> Redirect {
    Redirect::permanent("/")
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A strong validator from the file's bytes (FNV-1a, 64 bit): cheap, and it changes whenever
/// the embedded file does.
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = find(name) else {
        return ApiError::not_found(format!("no UI file named {name}")).into_response();
    };
    let tag = etag(asset.body);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(request: Request<Body>) -> Response {
        routes().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn root_serves_html_with_validator() {
        let response = call(Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let tag = response.headers()[header::ETAG].to_str().unwrap().to_owned();

        let again = call(
            Request::get("/")
                .header(header::IF_NONE_MATCH, &tag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn assets_have_their_types_and_unknown_is_404() {
        for (path, ty) in [
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let response = call(Request::get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], ty, "{path}");
        }
        let missing = call(Request::get("/ui/nope.js").body(Body::empty()).unwrap()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn vmui_redirects_to_root() {
        for path in ["/vmui", "/vmui/"] {
            let response = call(Request::get(path).body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
            assert_eq!(response.headers()[header::LOCATION], "/", "{path}");
        }
    }

    /// Every `/ui/...` reference in the HTML and scripts names an embedded file, so a file
    /// added to `web/` but not to `ASSETS` fails here rather than in a browser.
    #[test]
    fn references_resolve_to_embedded_files() {
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            for (i, _) in text.match_indices("/ui/") {
                let rest = &text[i + 4..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                assert!(find(name).is_some(), "{} references /ui/{name}", asset.name);
            }
        }
    }
}
