//! `/asyncapi` (feature `asyncapi-ui`): an HTML page of the app's AsyncAPI
//! document, rendered in the browser by the official AsyncAPI web component
//! (`@asyncapi/react-component`, Apache-2.0), vendored in
//! `runtime/assets/asyncapi-ui/` by `scripts/vendor-asyncapi-ui` and served
//! from the binary: the page loads nothing from elsewhere.
//!
//! Every URL the page uses is relative (`asyncapi-ui/index.js`, ...), so it
//! also works behind a proxy that mounts the listener under a prefix.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AsyncApi;

/// The component's version, as vendored.
const VERSION: &str = include_str!("../../assets/asyncapi-ui/VERSION");
/// Its standalone browser bundle (defines `AsyncApiStandalone`).
const SCRIPT: &[u8] = include_bytes!("../../assets/asyncapi-ui/index.js");
/// The licences of what the bundle contains (the bundle's first line points here).
const SCRIPT_LICENSES: &str = include_str!("../../assets/asyncapi-ui/index.js.LICENSE.txt");
/// Its default styles.
const STYLES: &[u8] = include_bytes!("../../assets/asyncapi-ui/default.min.css");
/// The component's licence.
const LICENSE: &str = include_str!("../../assets/asyncapi-ui/LICENSE");

pub(super) fn routes(doc: &AsyncApi) -> Router {
    let html = page(doc);
    Router::new()
        .route(
            "/asyncapi",
            get(move || asset(html, "text/html; charset=utf-8")),
        )
        .route(
            "/asyncapi-ui/index.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/asyncapi-ui/index.js.LICENSE.txt",
            get(|| asset(SCRIPT_LICENSES, "text/plain; charset=utf-8")),
        )
        .route(
            "/asyncapi-ui/default.min.css",
            get(|| asset(STYLES, "text/css; charset=utf-8")),
        )
        .route(
            "/asyncapi-ui/LICENSE",
            get(|| asset(LICENSE, "text/plain; charset=utf-8")),
        )
}

async fn asset(body: impl IntoResponse, content_type: &'static str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The page: the document inline (no second request, nothing to fetch),
/// the component's script and styles from this listener.
fn page(doc: &AsyncApi) -> String {
    let title = doc.to_json()["info"]["title"]
        .as_str()
        .map(escape_html)
        .unwrap_or_default();
    // Inside <script>, only `</script` (or `<!--`) could end the element
    // early: a JSON string may carry `<` as `\u003c` instead.
    let document = doc.to_json_string().replace('<', "\\u003c");
    let version = VERSION.trim();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · AsyncAPI</title>
<!-- @asyncapi/react-component {version}, Apache-2.0: asyncapi-ui/LICENSE -->
<link rel="stylesheet" href="asyncapi-ui/default.min.css">
</head>
<body>
<div id="asyncapi"></div>
<script type="application/json" id="asyncapi-document">{document}</script>
<script src="asyncapi-ui/index.js"></script>
<script>
  AsyncApiStandalone.render({{
    schema: JSON.parse(document.getElementById("asyncapi-document").textContent),
    config: {{ show: {{ sidebar: true }} }},
  }}, document.getElementById("asyncapi"));
</script>
</body>
</html>
"#
    )
}

/// `text` safe as HTML text.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_the_document_without_ending_its_script_early() {
        let doc = AsyncApi {
            document: serde_json::json!({
                "info": { "title": "a <b> & c" },
                "description": "</script><script>alert(1)</script>",
            }),
        };
        let html = page(&doc);
        assert_eq!(html.matches("</script>").count(), 3, "{html}");
        assert!(html.contains("<title>a &lt;b&gt; &amp; c · AsyncAPI</title>"));
        let start = html
            .find(r#"id="asyncapi-document">"#)
            .expect("the document")
            + 23;
        let end = start + html[start..].find("</script>").expect("its end");
        let embedded: serde_json::Value = serde_json::from_str(&html[start..end]).expect("JSON");
        assert_eq!(embedded, doc.to_json());
    }
}
