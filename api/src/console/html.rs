//! HTML without a template engine: every piece of text goes through [`esc`] (or the `Html` builder's
//! `text`), so a campaign name, contact attribute or CSV cell is shown as text, never markup.

use std::fmt::Write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for an HTML element or a double-quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markup being built. `raw` takes trusted markup (our own literals); `text` escapes.
#[derive(Default)]
pub struct Html(pub String);

impl Html {
    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.0.push_str(&esc(s));
        self
    }
    /// `<tag attrs>escaped text</tag>`; `attrs` is trusted markup.
    pub fn el(&mut self, tag: &str, attrs: &str, text: &str) -> &mut Self {
        let _ = write!(self.0, "<{tag}{}{attrs}>{}</{tag}>", if attrs.is_empty() { "" } else { " " }, esc(text));
        self
    }
}

/// What the layout needs to know about the person looking.
pub struct Chrome<'a> {
    /// The CSRF token for the logout form; None on the login page (no navigation either).
    pub csrf: Option<&'a str>,
    pub key_name: Option<&'a str>,
}

/// A whole page: the layout around `body`.
pub fn page(status: StatusCode, title: &str, chrome: &Chrome, body: &str) -> Response {
    let mut h = Html::default();
    h.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · Dialer console</title>")
        .raw("<link rel=\"stylesheet\" href=\"/console/assets/console.css\">")
        // No favicon request (and no 404 in every page's console).
        .raw("<link rel=\"icon\" href=\"data:,\">")
        .raw("<script src=\"/console/assets/console.js\" defer></script></head><body>")
        .raw("<a class=\"skip\" href=\"#main\">Skip to content</a><header><span class=\"brand\">Dialer console</span>");
    if let Some(csrf) = chrome.csrf {
        h.raw("<nav aria-label=\"Main\"><a href=\"/console/campaigns\">Campaigns</a>")
            .raw("<a href=\"/console/campaigns/new\">New campaign</a><a href=\"/console/dnc\">Do-not-call</a>")
            .raw("<a href=\"/console/keys\">API keys</a>")
            .raw("<a href=\"/console/operator\">Take calls</a></nav>")
            .raw("<form method=\"post\" action=\"/console/logout\" class=\"logout\">")
            .raw(&csrf_field(csrf));
        if let Some(name) = chrome.key_name {
            h.el("span", "class=\"who\"", name);
        }
        h.raw("<button type=\"submit\">Log out</button></form>");
    }
    h.raw("</header><main id=\"main\">").raw(body).raw("</main></body></html>");
    let mut res = (status, h.0).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res
}

pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

/// A horizontal bar chart (SVG, so the strict CSP needs no inline styles) of counts by label.
pub fn bar_chart(id: &str, label: &str, counts: &[(String, i64)]) -> String {
    let max = counts.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    let row_h = 28;
    let height = (counts.len().max(1) * row_h) as i64;
    let mut s = format!(
        "<svg id=\"{}\" class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 400 {height}\" \
         preserveAspectRatio=\"xMinYMin meet\">",
        esc(id),
        esc(label)
    );
    if counts.is_empty() {
        let _ = write!(s, "<text x=\"0\" y=\"18\">none yet</text>");
    }
    for (i, (k, v)) in counts.iter().enumerate() {
        let y = i * row_h;
        let w = (*v as f64 / max as f64 * 200.0).round() as i64;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"150\" y=\"{}\" width=\"{w}\" height=\"18\" class=\"bar\"></rect>\
             <text x=\"{}\" y=\"{}\" class=\"n\">{v}</text>",
            y + 18,
            esc(k),
            y + 4,
            155 + w,
            y + 18
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    }
}
