// build: -C strip=symbols
// markdown: a plain WASI command (Rust std, no crates) that reads markdown-ish text on stdin and
// writes HTML: `#`…`######` headings, `-`/`*` lists, `>` quotes, fenced code blocks, paragraphs,
// and inline **bold**, *emphasis*, `code` and [links](url). Served CGI-style, the request body
// is its stdin:
//   curl --data-binary @README.md localhost:8080/markdown
//   capsule run examples/markdown/markdown.wasm < README.md
use std::io::{self, Read, Write};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Inline markup of one (already escaped) line.
fn inline(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let find = |from: usize, pat: &str| -> Option<usize> {
        let rest: String = chars[from..].iter().collect();
        rest.find(pat).map(|b| from + rest[..b].chars().count())
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            if let Some(end) = find(i + 1, "`") {
                out.push_str("<code>");
                out.extend(&chars[i + 1..end]);
                out.push_str("</code>");
                i = end + 1;
                continue;
            }
        }
        if c == '*' && i + 1 < chars.len() && chars[i + 1] == '*' {
            if let Some(end) = find(i + 2, "**") {
                let inner: String = chars[i + 2..end].iter().collect();
                out.push_str(&format!("<strong>{}</strong>", inline(&inner)));
                i = end + 2;
                continue;
            }
        }
        if c == '*' || c == '_' {
            if let Some(end) = find(i + 1, &c.to_string()) {
                if end > i + 1 {
                    let inner: String = chars[i + 1..end].iter().collect();
                    out.push_str(&format!("<em>{}</em>", inline(&inner)));
                    i = end + 1;
                    continue;
                }
            }
        }
        if c == '[' {
            if let Some(close) = find(i + 1, "](") {
                if let Some(end) = find(close + 2, ")") {
                    let label: String = chars[i + 1..close].iter().collect();
                    let url: String = chars[close + 2..end].iter().collect();
                    out.push_str(&format!("<a href=\"{}\">{}</a>", url, inline(&label)));
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn main() {
    let mut input = String::new();
    if io::stdin().read_to_string(&mut input).is_err() {
        eprintln!("markdown: the input is not UTF-8 text");
        std::process::exit(1);
    }
    let mut html = String::new();
    let mut paragraph: Vec<String> = Vec::new();
    let mut list = false;
    let mut code = false;
    let flush = |html: &mut String, paragraph: &mut Vec<String>| {
        if !paragraph.is_empty() {
            html.push_str(&format!("<p>{}</p>\n", paragraph.join(" ")));
            paragraph.clear();
        }
    };
    for raw in input.lines() {
        if raw.trim_start().starts_with("```") {
            flush(&mut html, &mut paragraph);
            html.push_str(if code { "</code></pre>\n" } else { "<pre><code>" });
            code = !code;
            continue;
        }
        if code {
            html.push_str(&escape(raw));
            html.push('\n');
            continue;
        }
        let line = escape(raw.trim_end());
        let item = line.strip_prefix("- ").or_else(|| line.strip_prefix("* "));
        if list && item.is_none() {
            html.push_str("</ul>\n");
            list = false;
        }
        if line.trim().is_empty() {
            flush(&mut html, &mut paragraph);
        } else if let Some(item) = item {
            flush(&mut html, &mut paragraph);
            if !list {
                html.push_str("<ul>\n");
                list = true;
            }
            html.push_str(&format!("  <li>{}</li>\n", inline(item)));
        } else if line.starts_with('#') {
            flush(&mut html, &mut paragraph);
            let level = line.chars().take_while(|&c| c == '#').count().min(6);
            html.push_str(&format!("<h{0}>{1}</h{0}>\n", level, inline(line[level..].trim())));
        } else if let Some(quote) = line.strip_prefix("&gt; ") {
            flush(&mut html, &mut paragraph);
            html.push_str(&format!("<blockquote>{}</blockquote>\n", inline(quote)));
        } else {
            paragraph.push(inline(line.trim()));
        }
    }
    flush(&mut html, &mut paragraph);
    if list {
        html.push_str("</ul>\n");
    }
    if code {
        html.push_str("</code></pre>\n");
    }
    let mut out = io::stdout();
    let _ = write!(out, "Content-Type: text/html; charset=utf-8\n\n{}", html);
}
