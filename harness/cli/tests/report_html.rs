//! The provision report (`report.html`) as a browser shows it: the built-in simulated fleet is
//! run for real, `hilsec report` rewrites the page, and headless Chromium renders it (the DOM,
//! a screenshot kept at `target/report-screenshot.png` for a person to look at, and a PDF as
//! printing gives it). Chromium is the Debian package `chromium`, which ci/test installs; when it
//! is missing the test fails and says so, it never passes silently.

mod common;

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHROMIUM: &str = "chromium";

/// Fails the test unless `chromium` runs.
fn require_chromium() {
    let ok = Command::new(CHROMIUM)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{CHROMIUM}` is not on PATH: run ci/test, which installs the Debian package chromium \
         (or: apt-get install -y --no-install-recommends chromium)"
    );
}

/// Runs headless Chromium with `args` and then `url`, stdout into `stdout`, within `limit`:
/// the browser runs in its own process group, killed whole if it outlives the limit.
fn chromium(args: &[&str], url: &str, profile: &Path, stdout: &Path, limit: Duration) {
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let stderr = stdout.with_extension("stderr");
    let mut child = Command::new(CHROMIUM)
        // Root (CI) cannot use Chromium's sandbox, and containers often lack the user
        // namespaces it needs otherwise; the page is our own local file.
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            &profile_arg,
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(fs::File::create(stdout).expect("stdout file"))
        .stderr(fs::File::create(&stderr).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            assert!(
                status.success(),
                "chromium {args:?} failed ({status}); stderr:\n{}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
            return;
        }
        if t0.elapsed() > limit {
            let pgid = i32::try_from(child.id()).expect("pid");
            // SAFETY: kill(2) on the process group of a child we started; no memory involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "chromium {args:?} did not finish within {limit:?} and was killed; stderr:\n{}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The workspace's target folder (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

/// The text between the first `start` at or after `from` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text[i..].find(end)? + i;
    Some(&text[i..j])
}

/// The matrix table of `framework` (its `data-framework` key) in the dumped DOM.
fn matrix<'a>(dom: &'a str, framework: &str) -> &'a str {
    between(dom, &format!("data-framework=\"{framework}\""), "</table>")
        .unwrap_or_else(|| panic!("no matrix table for {framework}"))
}

/// The header labels of a matrix table (the provision ids) and its rows (model -> cells).
fn columns(table: &str) -> Vec<String> {
    let head = between(table, "<thead>", "</thead>").expect("thead");
    head.split("<span class=\"pid\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap_or_default().to_string())
        .collect()
}

fn row<'a>(table: &'a str, model: &str) -> Vec<&'a str> {
    let r = between(table, &format!("<tr data-model=\"{model}\">"), "</tr>")
        .unwrap_or_else(|| panic!("no matrix row for {model}"));
    r.split("<td").skip(1).collect()
}

fn cell<'a>(table: &'a str, model: &str, column: &str) -> &'a str {
    let i = columns(table)
        .iter()
        .position(|c| c == column)
        .unwrap_or_else(|| panic!("no column {column}: {:?}", columns(table)));
    row(table, model)[i]
}

/// Text with tags removed (a cell's visible words).
fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 href")
}

#[test]
fn sim_fleet_report_renders_in_chromium() {
    require_simdev();
    require_chromium();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("results");
    let out_s = out.to_str().expect("utf-8 path");
    let run = hilsec(
        &[
            "run",
            "--board",
            "boards/sim",
            "--suite",
            "password",
            "--suite",
            "disclosure",
            "--out",
            out_s,
        ],
        tmp.path(),
        Duration::from_secs(300),
    );
    assert_eq!(
        run.code(),
        1,
        "the weak models fail, so exit 1; stderr:\n{}",
        run.stderr
    );
    let page = out.join("report.html");
    // WIRING CHECK: `hilsec run` itself writes report.html (the results reporter calls
    // hilsec_report::html::write at the end of every run), before `hilsec report` is used.
    assert!(
        page.is_file(),
        "`hilsec run` wrote no report.html in {}",
        out.display()
    );
    let written_by_run = fs::read_to_string(&page).expect("report.html");

    // `hilsec report DIR` rewrites it from results.json and prints its path.
    let report = hilsec(&["report", out_s], tmp.path(), Duration::from_secs(60));
    assert_eq!(
        report.code(),
        0,
        "hilsec report; stderr:\n{}",
        report.stderr
    );
    assert_eq!(report.stdout.trim(), page.display().to_string());
    let html = fs::read_to_string(&page).expect("report.html");
    assert_eq!(
        html, written_by_run,
        "the report command writes the same page as the run"
    );
    assert!(
        no_external_resources(&html),
        "the page loads nothing from the network"
    );

    let url = format!("file://{}", page.display());
    let profile = tmp.path().join("chromium-profile");
    let limit = Duration::from_secs(90);

    // The DOM after the page's own script ran.
    let dom_file = tmp.path().join("dom.html");
    chromium(&["--dump-dom"], &url, &profile, &dom_file, limit);
    let dom = fs::read_to_string(&dom_file).expect("dumped DOM");
    assert!(
        dom.contains("Provision report"),
        "not the report: {dom:.400}"
    );
    for fw in ["en303645", "ts103701", "psti", "cls1"] {
        let table = matrix(&dom, fw);
        for model in ["SimCam C0", "SimHub H2", "SimPlug S1"] {
            assert!(
                table.contains(&format!("<tr data-model=\"{model}\">")),
                "{fw}: a row for {model}"
            );
        }
        assert_eq!(
            table.matches("<tr data-model=").count(),
            3,
            "{fw}: one row per model"
        );
        let plug = row(table, "SimPlug S1");
        assert!(
            plug.iter().all(|c| !c.contains("data-verdict=\"fail\"")),
            "{fw}: SimPlug S1 has no fail: {plug:?}"
        );
    }
    // SimCam C0 accepts a universal default password: its cells say so in words.
    for (fw, col) in [
        ("en303645", "5.1-1"),
        ("ts103701", "5.1-1-1"),
        ("psti", "1(2)"),
        ("cls1", "Unique default passwords"),
    ] {
        let c = cell(matrix(&dom, fw), "SimCam C0", col);
        assert!(c.contains("data-verdict=\"fail\""), "{fw} {col}: {c}");
        let words = text_of(&format!("<td{c}"));
        assert!(
            words.contains("✗") && words.contains("fail"),
            "{fw} {col}: a symbol and a text label, not colour alone: {words:?}"
        );
    }
    let c = cell(matrix(&dom, "en303645"), "SimPlug S1", "5.1-1");
    assert!(text_of(&format!("<td{c}")).contains("pass"), "{c}");
    // Nothing of the update suite ran: its provisions' cells are empty.
    let c = cell(matrix(&dom, "en303645"), "SimCam C0", "5.3-10");
    assert!(c.contains("data-verdict=\"\""), "no update test ran: {c}");
    assert!(
        dom.contains("id=\"legend\""),
        "a legend of the verdict symbols"
    );
    // The not-covered list.
    let manual = between(&dom, "id=\"not-covered\"", "</ul>").expect("the not-covered list");
    assert!(manual.matches("<li>").count() >= 5, "{manual}");
    assert!(manual.contains("EN 303 645 5.1-3"), "{manual}");
    // Evidence links resolve to files in the output folder.
    let hrefs: Vec<String> = dom
        .split("class=\"evidence\" href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_string())
        .collect();
    assert!(
        hrefs.len() >= 30,
        "an evidence link per test: {}",
        hrefs.len()
    );
    for h in &hrefs {
        assert!(h.starts_with("evidence/"), "relative evidence link: {h}");
        let file = out.join(percent_decode(h));
        assert!(file.is_file(), "evidence link {h} -> {}", file.display());
    }
    // The unit's identity and its board file's hash.
    assert!(dom.contains("id=\"unit-sim-cam-1\""), "drill-down per unit");
    assert!(dom.contains("sha256 "), "board files with their hashes");

    // A screenshot a person can look at.
    let shot = target_dir().join("report-screenshot.png");
    let _ = fs::remove_file(&shot);
    let shot_arg = format!("--screenshot={}", shot.display());
    chromium(
        &[&shot_arg, "--window-size=1280,2000"],
        &url,
        &profile,
        &tmp.path().join("screenshot.out"),
        limit,
    );
    let bytes = fs::read(&shot).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.width, 1280, "window width");
    assert!(
        (1000..=4000).contains(&info.height),
        "height {}",
        info.height
    );
    let channels = info.color_type.samples();
    assert!(channels >= 3, "colour screenshot: {:?}", info.color_type);
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut not_white = 0usize;
    let mut fail_badge = 0usize;
    for px in pixels.chunks_exact(channels) {
        let rgb = (px[0], px[1], px[2]);
        colours.insert(rgb);
        if rgb != (255, 255, 255) {
            not_white += 1;
        }
        // The fail badge's background (#fde7e7).
        if rgb == (0xfd, 0xe7, 0xe7) {
            fail_badge += 1;
        }
    }
    let total = pixels.len() / channels;
    assert!(
        colours.len() >= 32,
        "a blank or flat page: {} colours",
        colours.len()
    );
    assert!(
        not_white * 20 > total,
        "mostly white: {not_white} of {total} pixels"
    );
    assert!(fail_badge > 100, "fail badges visible: {fail_badge} pixels");
    eprintln!("screenshot: {}", shot.display());

    // Printed to PDF.
    let pdf = tmp.path().join("report.pdf");
    let pdf_arg = format!("--print-to-pdf={}", pdf.display());
    chromium(
        &[&pdf_arg, "--no-pdf-header-footer"],
        &url,
        &profile,
        &tmp.path().join("pdf.out"),
        limit,
    );
    let doc = fs::read(&pdf).expect("PDF written");
    assert!(doc.starts_with(b"%PDF-"), "a PDF");
    assert!(doc.len() > 50_000, "a PDF of {} bytes", doc.len());
    let pages = doc.windows(10).filter(|w| w == b"/Type /Pag").count();
    assert!(pages >= 3, "the printed report has {pages} page objects");
}

/// No `src=`/`href=` to another host: links to the manufacturer's pages may appear in device
/// messages (as text), never as resources.
fn no_external_resources(html: &str) -> bool {
    !["src=\"http", "href=\"http", "url(http", "@import"]
        .iter()
        .any(|p| html.contains(p))
}

#[test]
fn report_command_names_the_file_and_what_to_do() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("nothing-here");
    fs::create_dir_all(&dir).expect("mkdir");
    let dir_s = dir.to_str().expect("utf-8");
    let r = hilsec(&["report", dir_s], tmp.path(), Duration::from_secs(30));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("results.json") && r.stderr.contains("hilsec run"),
        "{}",
        r.stderr
    );
    assert!(!dir.join("report.html").exists());

    fs::write(dir.join("results.json"), "{\"tests\": [").expect("write");
    let r = hilsec(&["report", dir_s], tmp.path(), Duration::from_secs(30));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&dir.join("results.json").display().to_string())
            && r.stderr.contains("not JSON"),
        "{}",
        r.stderr
    );

    fs::write(dir.join("results.json"), "{\"tests\": []}").expect("write");
    let r = hilsec(&["report", dir_s], tmp.path(), Duration::from_secs(30));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a hilsec results.json"),
        "{}",
        r.stderr
    );

    // A valid file in a folder that cannot be written: exit 3 (not as root, which may write
    // anywhere).
    let empty = r#"{"run": {"tool": "hilsec", "version": "0.1.0", "started": "s", "finished": "f",
        "duration_ms": 0, "interrupted": false, "units": [],
        "counts": {"pass": 0, "fail": 0, "inconclusive": 0, "not_applicable": 0, "error": 0}},
        "tests": []}"#;
    fs::write(dir.join("results.json"), empty).expect("write");
    let r = hilsec(&["report", dir_s], tmp.path(), Duration::from_secs(30));
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(dir.join("report.html").is_file());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).expect("chmod");
        let r = hilsec(&["report", dir_s], tmp.path(), Duration::from_secs(30));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod back");
        assert_eq!(r.code(), 3, "{}", r.stderr);
        assert!(r.stderr.contains("report"), "{}", r.stderr);
    }
}

/// Every provision a suite cites is in the report's catalogue, so its column has a title.
#[test]
fn every_provision_the_suites_cite_is_catalogued() {
    use hilsec_report::provisions::{find, split, Framework};
    let mut missing = Vec::new();
    for suite in hilsec_suites::all() {
        for t in &suite.tests {
            for p in t.info().provisions {
                if split(p).0 != Framework::Other && find(p).is_none() {
                    missing.push(format!("{} cites {p}", t.info().id));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "add these to harness/report/src/provisions.rs: {missing:?}"
    );
}
