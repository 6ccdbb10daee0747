//! From a fetched page to the text the disclosure heuristics read, and from that text to
//! sentences.
//!
//! Hand-written rather than a crate: the heuristics need only visible text, link targets with
//! their anchor text, `<input>` types and form actions, and they need to know which lines are
//! headings. A full HTML renderer would be a large dependency for that, and the stripper's
//! behaviour is part of the evidence the suite cites, so it is kept small and documented here.
//!
//! HTML handling follows the HTML tokenizer where it matters for robustness: `<` followed by a
//! letter opens a tag that runs to the next `>` outside a quoted attribute value (a tag cut off
//! by the end of the input is dropped, as browsers do); `<!--` runs to `-->`; `<!…>` and
//! `<?…>` to `>`; the contents of `<script>`, `<style>` and `<template>` are skipped; any other
//! `<` is text. Each byte is visited a bounded number of times, so the cost is linear in the
//! input. Block elements break lines, table cells are separated by ` | `, and the text of
//! headings (`<h1>`–`<h6>`, `<dt>`) ends with a label mark so [`sentences`] can attach
//! a heading to the line under it.

use std::borrow::Cow;

use regex::Regex;

/// The most bytes of a page that are analysed; what follows is ignored. Policies and support
/// pages are far smaller; the cap keeps a hostile or runaway response from costing more.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Compiles one of the module's built-in patterns. `\b` is made ASCII-only so the fast
/// automata apply (every keyword is ASCII); a pattern that does not compile is a bug.
pub(crate) fn re(pattern: &str) -> Regex {
    Regex::new(&pattern.replace(r"\b", r"(?-u:\b)")).expect("a valid built-in pattern")
}

/// A number written in words, one to ninety-nine ("five", "forty-eight", "seventy two").
pub(crate) const WORD_NUMBER: &str = r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|one|two|three|four|five|six|seven|eight|nine|ten)";

/// Marks the end of a heading line in [`Page::text`]; never part of a snippet.
pub(crate) const LABEL_MARK: char = '\u{1F}';

/// A link on the page: its target and the text it shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub href: String,
    pub text: String,
}

/// A page reduced to what the heuristics read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Page {
    /// Visible text: one block per line, whitespace collapsed, entities decoded.
    pub text: String,
    /// `<a href>` targets with their anchor text (HTML only).
    pub links: Vec<Link>,
    /// The `type` of every `<input>`, lowercased (`text` when absent).
    pub input_types: Vec<String>,
    /// The `action` of every `<form>`.
    pub form_actions: Vec<String>,
}

/// Most links, inputs and form actions kept; more add nothing to a heuristic.
const MAX_ITEMS: usize = 2000;

/// Reads a page body (HTML or plain text, any encoding read as UTF-8 with replacement).
pub(crate) fn page_from_bytes(body: &[u8]) -> Page {
    let capped = &body[..body.len().min(MAX_PAGE_BYTES)];
    let s = String::from_utf8_lossy(capped);
    if looks_like_html(&s) {
        parse_html(&s)
    } else {
        Page {
            text: plain_text(&s),
            ..Page::default()
        }
    }
}

/// Whether the body is HTML: it contains one of the common structural tags.
fn looks_like_html(s: &str) -> bool {
    const MARKERS: &[&str] = &[
        "<!doctype",
        "<html",
        "<head",
        "<body",
        "<meta",
        "<title",
        "<p>",
        "<p ",
        "<div",
        "<br",
        "<a href",
        "<a ",
        "<span",
        "<h1",
        "<h2",
        "<h3",
        "<h4",
        "<table",
        "<ul",
        "<ol",
        "<li>",
        "<section",
        "<main",
        "<article",
        "<form",
        "<input",
        "<script",
        "<style",
        "<dl",
    ];
    let head: String = s
        .char_indices()
        .take_while(|(i, _)| *i < 256 * 1024)
        .map(|(_, c)| c.to_ascii_lowercase())
        .collect();
    MARKERS.iter().any(|m| head.contains(m))
}

// ---------------------------------------------------------------------------------------------
// Plain text

/// Plain text: hard-wrapped lines of a paragraph are joined; blank lines, list items, table
/// rows and lines ending in `:` start new lines; Markdown (`#`) and underlined headings become
/// labels.
fn plain_text(s: &str) -> String {
    let clean = sanitise(s);
    let lines: Vec<&str> = clean.lines().map(str::trim).collect();
    let mut raw = String::with_capacity(s.len());
    let mut open = false; // a paragraph line is being continued
    for (k, line) in lines.iter().enumerate() {
        let next = lines.get(k + 1).copied().unwrap_or("");
        if line.is_empty() || is_underline(line) {
            raw.push('\n');
            open = false;
            continue;
        }
        let heading = line.starts_with('#') || (is_underline(next) && !next.is_empty());
        let starts_block = heading
            || line.starts_with(['-', '*', '•', '|', '>'])
            || starts_with_number_marker(line);
        if open && !starts_block {
            raw.push(' ');
        } else if open {
            raw.push('\n');
        }
        raw.push_str(line);
        if heading {
            raw.push(LABEL_MARK);
        }
        if heading || line.ends_with(':') || line.starts_with('|') {
            raw.push('\n');
            open = false;
        } else {
            open = true;
        }
    }
    normalise(&raw)
}

fn is_underline(line: &str) -> bool {
    line.len() >= 3 && (line.bytes().all(|b| b == b'=') || line.bytes().all(|b| b == b'-'))
}

/// `1.` or `2)` at the start of a line.
fn starts_with_number_marker(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    (1..=3).contains(&digits) && matches!(line.as_bytes().get(digits), Some(b'.') | Some(b')'))
}

// ---------------------------------------------------------------------------------------------
// HTML

/// Elements whose start and end break the line.
const BLOCK: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "option",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "title",
    "tr",
    "ul",
];
/// Elements whose text ends with a label mark.
const HEADING: &[&str] = &["h1", "h2", "h3", "h4", "h5", "h6", "dt"];
/// Elements whose content is not text.
const RAW: &[&str] = &["script", "style", "template"];

/// One parsed tag.
#[derive(Debug, Default)]
struct Tag {
    name: String,
    closing: bool,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_html(s: &str) -> Page {
    let b = s.as_bytes();
    let mut raw = String::with_capacity(s.len() / 2);
    let mut page = Page::default();
    // The link being read: its index in `page.links` and where its text starts in `raw`.
    let mut anchor: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            let next = find_byte(b, i, b'<').unwrap_or(b.len());
            push_text(&mut raw, &s[i..next]);
            i = next;
            continue;
        }
        if starts_with_ci(b, i, b"<!--") {
            i = find_seq(b, i + 4, b"-->").map_or(b.len(), |p| p + 3);
            continue;
        }
        if matches!(b.get(i + 1), Some(b'!') | Some(b'?')) {
            i = find_byte(b, i, b'>').map_or(b.len(), |p| p + 1);
            continue;
        }
        let closing = b.get(i + 1) == Some(&b'/');
        let name_at = i + 1 + usize::from(closing);
        if !b.get(name_at).is_some_and(u8::is_ascii_alphabetic) {
            if closing {
                // `</` + non-letter: a bogus comment up to `>`.
                i = find_byte(b, i, b'>').map_or(b.len(), |p| p + 1);
            } else {
                raw.push('<');
                i += 1;
            }
            continue;
        }
        let Some((mut tag, end)) = read_tag(s, name_at) else {
            break; // cut off by the end of the input: dropped
        };
        tag.closing = closing;
        i = end;
        handle_tag(&tag, &mut raw, &mut page, &mut anchor);
        if !closing && RAW.contains(&tag.name.as_str()) {
            let close = format!("</{}", tag.name);
            i = find_seq_ci(b, i, close.as_bytes())
                .and_then(|p| find_byte(b, p, b'>'))
                .map_or(b.len(), |p| p + 1);
        }
    }
    close_anchor(&mut anchor, &raw, &mut page);
    page.text = normalise(&raw);
    page
}

fn handle_tag(tag: &Tag, raw: &mut String, page: &mut Page, anchor: &mut Option<(usize, usize)>) {
    let name = tag.name.as_str();
    if name == "a" {
        close_anchor(anchor, raw, page);
        if !tag.closing && page.links.len() < MAX_ITEMS {
            if let Some(href) = tag.attr("href") {
                page.links.push(Link {
                    href: href.trim().to_string(),
                    text: String::new(),
                });
                *anchor = Some((page.links.len() - 1, raw.len()));
            }
        }
        return;
    }
    if name == "input" && page.input_types.len() < MAX_ITEMS {
        let kind = tag
            .attr("type")
            .unwrap_or("text")
            .trim()
            .to_ascii_lowercase();
        page.input_types.push(kind);
    }
    if name == "form" && !tag.closing && page.form_actions.len() < MAX_ITEMS {
        if let Some(action) = tag.attr("action") {
            page.form_actions.push(action.trim().to_string());
        }
    }
    if HEADING.contains(&name) {
        if tag.closing {
            raw.push(LABEL_MARK);
        }
        raw.push('\n');
    } else if name == "td" || name == "th" {
        raw.push_str(if tag.closing { " | " } else { " " });
    } else if BLOCK.contains(&name) {
        raw.push('\n');
    }
}

fn close_anchor(anchor: &mut Option<(usize, usize)>, raw: &str, page: &mut Page) {
    if let Some((idx, start)) = anchor.take() {
        if let (Some(link), Some(text)) = (page.links.get_mut(idx), raw.get(start..)) {
            link.text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }
}

/// Reads a tag whose name starts at `at` (just after `<` or `</`). Returns the tag and the
/// index after its `>`, or `None` when the input ends inside the tag.
fn read_tag(s: &str, at: usize) -> Option<(Tag, usize)> {
    let b = s.as_bytes();
    let mut j = at;
    while j < b.len() && !is_tag_delim(b[j]) {
        j += 1;
    }
    let mut tag = Tag {
        name: s[at..j].to_ascii_lowercase(),
        ..Tag::default()
    };
    loop {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        match b.get(j)? {
            b'>' => return Some((tag, j + 1)),
            b'/' => {
                j += 1;
                continue;
            }
            _ => {}
        }
        // Attribute name (an `=` in first position belongs to the name, as in the tokenizer).
        let name_start = j;
        j += 1;
        while j < b.len() && !is_tag_delim(b[j]) && b[j] != b'=' {
            j += 1;
        }
        let name = s[name_start..j].to_ascii_lowercase();
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let mut value = String::new();
        if b.get(j) == Some(&b'=') {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            match b.get(j)? {
                q @ (b'"' | b'\'') => {
                    let close = find_byte(b, j + 1, *q)?;
                    value = decode_entities(&s[j + 1..close]).into_owned();
                    j = close + 1;
                }
                _ => {
                    let start = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    value = decode_entities(&s[start..j]).into_owned();
                }
            }
        }
        if tag.attrs.len() < 64 {
            tag.attrs.push((name, value));
        }
    }
}

fn is_tag_delim(c: u8) -> bool {
    c.is_ascii_whitespace() || c == b'/' || c == b'>'
}

/// Appends a text node: entities decoded, every kind of whitespace turned into a space (line
/// breaks in HTML come from elements, not from the source's newlines).
fn push_text(raw: &mut String, text: &str) {
    let decoded = decode_entities(text);
    raw.push_str(&sanitise(&decoded).replace('\n', " "));
}

fn find_byte(b: &[u8], from: usize, c: u8) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|x| *x == c)
        .map(|p| p + from)
}

fn find_seq(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

fn find_seq_ci(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w.eq_ignore_ascii_case(pat))
        .map(|p| p + from)
}

fn starts_with_ci(b: &[u8], at: usize, pat: &[u8]) -> bool {
    b.get(at..at + pat.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(pat))
}

// ---------------------------------------------------------------------------------------------
// Entities and whitespace

/// Decodes numeric character references and the named entities that occur in policy pages
/// (including those used to obfuscate addresses: `&commat;`, `&period;`). Unknown or
/// malformed references are left as they are.
pub(crate) fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after
            .bytes()
            .take(33)
            .position(|c| c == b';')
            .filter(|&e| e > 0);
        match end.and_then(|e| entity(&after[..e]).map(|c| (c, e))) {
            Some((c, e)) => {
                if let Some(c) = c {
                    out.push(c);
                }
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The character an entity name stands for: `Some(None)` for entities that render as nothing.
fn entity(name: &str) -> Option<Option<char>> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        let c = char::from_u32(code)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{FFFD}');
        return Some(Some(c));
    }
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" | "ensp" | "emsp" | "thinsp" => ' ',
        "shy" | "zwnj" | "zwj" | "ZeroWidthSpace" => return Some(None),
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "middot" => '·',
        "bull" => '•',
        "commat" => '@',
        "period" => '.',
        "colon" => ':',
        "semi" => ';',
        "comma" => ',',
        "sol" => '/',
        "lpar" => '(',
        "rpar" => ')',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "excl" => '!',
        "quest" => '?',
        "num" => '#',
        "percnt" => '%',
        "plus" => '+',
        "equals" => '=',
        "lowbar" => '_',
        "hyphen" | "dash" => '-',
        _ => return None,
    };
    Some(Some(c))
}

/// Control characters (the label mark among them) become spaces, invisible formatting
/// characters disappear, Unicode spaces become ASCII spaces. Newlines are kept.
fn sanitise(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !matches!(
                c,
                '\u{AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
            )
        })
        .map(|c| match c {
            '\n' => c,
            c if c.is_whitespace() || c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// One block per line: spaces collapsed, lines trimmed (and of cell separators), empty lines
/// dropped. A label mark survives only at the end of a non-empty line.
fn normalise(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for line in raw.split('\n') {
        let label = line.contains(LABEL_MARK);
        let words: Vec<&str> = line
            .split([' ', LABEL_MARK])
            .filter(|w| !w.is_empty())
            .collect();
        let joined = words.join(" ");
        let trimmed = joined.trim_matches(|c: char| c == '|' || c == ' ');
        if trimmed.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(trimmed);
        if label {
            out.push(LABEL_MARK);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sentences

/// Longest label that is joined to the line under it.
const MAX_LABEL_CHARS: usize = 100;

/// Splits page text into sentences. A label line (a heading, or a line ending in `:`) is
/// joined to the line under it first, unless that line is a label too, so "Acknowledgement" over "within 3 business days"
/// reads as one sentence. Lines split at `.`, `!` or `?` followed by a space and a capital
/// letter, digit or opening quote, except after common abbreviations ("e.g.", "Dec.").
pub(crate) fn sentences(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut k = 0;
    while k < lines.len() {
        let (line, label) = strip_label(lines[k]);
        let is_label = label || line.ends_with(':');
        // A label over another label (a title over a sub-heading) stands alone.
        let next = lines
            .get(k + 1)
            .filter(|n| !n.ends_with(LABEL_MARK) && !n.ends_with(':'));
        match next {
            Some(next) if is_label && line.chars().count() <= MAX_LABEL_CHARS => {
                let (next, _) = strip_label(next);
                let sep = if line.ends_with(':') { " " } else { ": " };
                out.extend(split_sentences(&format!("{line}{sep}{next}")));
                k += 2;
            }
            _ => {
                out.extend(split_sentences(line));
                k += 1;
            }
        }
    }
    out
}

fn strip_label(line: &str) -> (&str, bool) {
    match line.strip_suffix(LABEL_MARK) {
        Some(l) => (l.trim_end(), true),
        None => (line, false),
    }
}

fn split_sentences(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    for (n, &(i, c)) in chars.iter().enumerate() {
        if !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let Some(&(_, space)) = chars.get(n + 1) else {
            continue;
        };
        let Some(&(_, first)) = chars.get(n + 2) else {
            continue;
        };
        let opens = first.is_uppercase()
            || first.is_ascii_digit()
            || matches!(first, '"' | '“' | '‘' | '(' | '[');
        if space != ' ' || !opens || (c == '.' && after_abbreviation(&line[..i])) {
            continue;
        }
        let end = i + c.len_utf8();
        let s = line[start..end].trim();
        if !s.is_empty() {
            out.push(s.to_string());
        }
        start = end;
    }
    let s = line[start..].trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    out
}

fn after_abbreviation(before: &str) -> bool {
    const ABBREV: &[&str] = &[
        "e.g", "i.e", "etc", "approx", "ca", "cf", "vs", "no", "nr", "st", "mr", "mrs", "ms", "dr",
        "incl", "fig", "a.m", "p.m", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec",
    ];
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_lowercase();
    word.chars().count() == 1 || ABBREV.contains(&word.as_str())
}

/// At most `max` characters of `sentence` around the byte range `at`, on char boundaries,
/// with `…` where it was cut.
pub(crate) fn snippet(sentence: &str, at: std::ops::Range<usize>, max: usize) -> String {
    let s = sentence.trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    let offset = sentence.len() - sentence.trim_start().len();
    let centre = at.start.saturating_sub(offset).min(s.len());
    let mut start = centre.saturating_sub(max / 3 * 2);
    while !s.is_char_boundary(start) {
        start -= 1;
    }
    let taken: String = s[start..].chars().take(max).collect();
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.push_str(taken.trim());
    if start + taken.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> Page {
        page_from_bytes(s.as_bytes())
    }

    #[test]
    fn strips_tags_scripts_and_comments() {
        let p = html(
            "<html><head><title>VDP</title><style>p{color:red}</style>\
             <script>var a = '<p>hidden</p>';</script></head>\
             <body><!-- a <p>comment</p> --><p>Report to <b>us</b>.</p><p>Next&nbsp;line</p></body></html>",
        );
        assert_eq!(p.text, "VDP\nReport to us.\nNext line");
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(
            decode_entities("security&#64;example&period;com &amp; &#x41;&bogus; &"),
            "security@example.com & A&bogus; &"
        );
        assert_eq!(
            decode_entities("&#0; &#99999999; &#xZZ;"),
            "\u{FFFD} \u{FFFD} &#xZZ;"
        );
    }

    #[test]
    fn reads_links_inputs_forms() {
        let p = html(
            "<form action=\"/login\"><input type=PASSWORD name=p><input name=u></form>\
             <a href='mailto:psirt@example.com'>mail <i>us</i></a> <a href=\"https://x.test/report\">Report</a>",
        );
        assert_eq!(p.input_types, vec!["password", "text"]);
        assert_eq!(p.form_actions, vec!["/login"]);
        assert_eq!(p.links[0].href, "mailto:psirt@example.com");
        assert_eq!(p.links[0].text, "mail us");
        assert_eq!(p.links[1].text, "Report");
    }

    #[test]
    fn unterminated_tag_is_dropped() {
        let p = html("<p>before</p><a href=\"x");
        assert_eq!(p.text, "before");
        let p = html("<p>a < b and c<3</p>");
        assert_eq!(p.text, "a < b and c<3");
    }

    #[test]
    fn headings_become_labels() {
        let p = html("<h2>Acknowledgement</h2><p>Within 3 business days.</p>");
        let s = sentences(&p.text);
        assert_eq!(s, vec!["Acknowledgement: Within 3 business days."]);
        let p = html("<table><tr><th>Status updates</th><td>every 7 days</td></tr></table>");
        assert_eq!(sentences(&p.text), vec!["Status updates | every 7 days"]);
    }

    #[test]
    fn plain_text_joins_wrapped_lines() {
        let p = page_from_bytes(
            b"We will acknowledge receipt\nwithin 3 business days.\n\n- Updates: every\n  7 days\n- Fix: 90 days\n",
        );
        assert_eq!(
            p.text,
            "We will acknowledge receipt within 3 business days.\n- Updates: every 7 days\n- Fix: 90 days"
        );
    }

    #[test]
    fn sentence_split_respects_abbreviations() {
        let s = split_sentences("Updates until Dec. 31, 2030. We fix bugs, e.g. crashes. Done");
        assert_eq!(
            s,
            vec![
                "Updates until Dec. 31, 2030.",
                "We fix bugs, e.g. crashes.",
                "Done"
            ]
        );
    }

    #[test]
    fn snippet_is_bounded() {
        let long = format!("{} key {}", "a".repeat(500), "é".repeat(500));
        let at = long.find("key").unwrap_or(0);
        let s = snippet(&long, at..at + 3, 100);
        assert!(s.chars().count() <= 102, "{}", s.chars().count());
        assert!(s.contains("key"));
    }
}
