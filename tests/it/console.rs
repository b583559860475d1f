//! The console at `/console/`: sign-in, sessions and CSRF over HTTP, and the whole of it in a
//! real browser (Debian's Chromium driven by Playwright, `tests/console/walkthrough.py`).

use std::path::PathBuf;
use std::process::Command;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::helpers::*;

/// The sign-in token the tests configure.
const TOKEN: &str = "console-token-for-tests-0123456789";
/// The region the browser announces an incident in, and how many customers live there.
const REGION: &str = "kr-busan";
const IN_REGION: usize = 4;
const ELSEWHERE: usize = 2;

fn with_console(extra: &str) -> Options {
    Options {
        env: vec![
            ("FOREWARN_CONSOLE__TOKEN_ENV".into(), "CONSOLE_TOKEN".into()),
            ("CONSOLE_TOKEN".into(), TOKEN.into()),
        ],
        own_authoring: true,
        extra_config: extra.into(),
        ..Options::default()
    }
}

fn customer(i: usize) -> Value {
    let region = if i < IN_REGION { REGION } else { "us-east" };
    json!({"specversion": "1.0", "id": format!("cust-{i}"), "source": "test/crm",
           "type": "customer.upserted", "time": "2026-11-23T08:00:00Z",
           "data": {"id": format!("c-busan-{i}"), "name": "박서연", "locale": "ko-KR",
                    "timezone": "Asia/Seoul", "phone": format!("+82105555{i:04}"),
                    "channels": ["sms"], "consent": {"sms": true, "marketing": true},
                    "region": region}})
}

/// A client that keeps redirects for the test to read.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn base(app: &App) -> String {
    format!("http://127.0.0.1:{}/console", app.http_port)
}

/// Signs in; returns the session cookie (`name=value`).
async fn sign_in(app: &App, who: &str, token: &str) -> (u16, Option<String>) {
    let response = client()
        .post(format!("{}/signin", base(app)))
        .form(&[
            ("who", who),
            ("token", token),
            ("next", "/console/incidents"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
    (response.status().as_u16(), cookie)
}

/// A page's HTML, with the session cookie.
async fn page(app: &App, cookie: &str, path: &str) -> (u16, String) {
    let response = client()
        .get(format!("{}{path}", base(app)))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Posts a form with the session cookie.
async fn post(app: &App, cookie: &str, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}{path}", base(app)))
        .header(COOKIE, cookie)
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// The CSRF token of the page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" content=""#)
        .expect("a csrf meta tag")
        + 21;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_request_without_a_session_is_refused_and_a_form_without_its_csrf_token_rejected() {
    let app = spawn_app_with(with_console("")).await;
    let http = client();

    // Pages send the visitor to sign in and back; everything else is refused.
    let today = http
        .get(format!("{}/today", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(today.status(), 303);
    assert_eq!(
        today.headers()[LOCATION],
        "/console/signin?next=%2Fconsole%2Ftoday"
    );
    for (path, body) in [
        (
            "/incidents/announce",
            "title=x&services=x&everyone=yes&severity=major&message=x",
        ),
        ("/api/preview", "template=delay-apology"),
        ("/customers/reveal", "id=c-busan-0"),
    ] {
        let refused = http
            .post(format!("{}{path}", base(&app)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{path}");
    }
    let api = http
        .get(format!("{}/api/incidents/inc-1", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    // A forged cookie is no session.
    let forged = http
        .get(format!("{}/today", base(&app)))
        .header(COOKIE, "forewarn_console=v1.99999999999.b3Bz.00.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);

    // A wrong token is refused, and not written to the log.
    let (status, cookie) = sign_in(&app, "Dana", "not-the-token").await;
    assert_eq!((status, cookie), (401, None));
    assert!(!app.log().contains("not-the-token"));
    assert_eq!(app.logged("Console sign-in refused").len(), 1);

    // Signed in: the session cookie is HttpOnly and SameSite=Strict, and pages are served.
    let response = client()
        .post(format!("{}/signin", base(&app)))
        .form(&[
            ("who", "Dana"),
            ("token", TOKEN),
            ("next", "/console/incidents"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/console/incidents");
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, html) = page(&app, &cookie, "/incidents").await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&html);

    // An announcement posted without its CSRF token (or with another's) is rejected, and
    // nothing is published.
    let form = [
        ("title", "Card payments failing"),
        ("services", "payments"),
        ("everyone", "yes"),
        ("severity", "major"),
        ("message", "Payments are failing."),
    ];
    for token in [None, Some("bm90LXRoZS10b2tlbg")] {
        let mut fields = form.to_vec();
        if let Some(token) = token {
            fields.push(("csrf", token));
        }
        let rejected = post(&app, &cookie, "/incidents/announce", &fields).await;
        assert_eq!(rejected.status(), 403);
        assert!(rejected.text().await.unwrap().contains("Reload the page"));
    }
    let mut events = app.js.get_stream("FOREWARN_EVENTS").await.unwrap();
    let published = events.info().await.unwrap().state.messages;
    assert_eq!(
        published, 0,
        "nothing may be published without the CSRF token"
    );

    // With it, the announcement goes out, signed by who announced it.
    let mut fields = form.to_vec();
    fields.push(("csrf", &csrf));
    let accepted = post(&app, &cookie, "/incidents/announce", &fields).await;
    assert_eq!(accepted.status(), 303);
    let location = accepted.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/console/incidents/inc-"),
        "{location}"
    );
    assert_eq!(events.info().await.unwrap().state.messages, 1);
    assert_eq!(app.logged("Announced from the console").len(), 1);
    // Once intake has read it, the list shows it, open.
    let id = location
        .trim_start_matches("/console/incidents/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    wait_for("the incident in the list", || async {
        let (_, html) = page(&app, &cookie, "/incidents").await;
        html.contains(&format!(r#"href="/console/incidents/{id}""#)) && html.contains("status-open")
    })
    .await;
    assert!(app.logged("Announced from the console")[0].contains("Dana"));

    // The incident page's forms: an update that does not escalate is published (and says it
    // reaches no one, as the CLI does); the resolution closes it; a later update is refused
    // with the reason on the page, and nothing more is published.
    for (form, done) in [("update", "updated"), ("resolve", "resolved")] {
        let posted = post(
            &app,
            &cookie,
            &format!("/incidents/{id}/{form}"),
            &[("csrf", csrf.as_str()), ("message", "Fix rolling out.")],
        )
        .await;
        assert_eq!(posted.status(), 303, "{form}");
        assert_eq!(
            posted.headers()[LOCATION],
            format!("/console/incidents/{id}?done={done}").as_str()
        );
    }
    assert_eq!(events.info().await.unwrap().state.messages, 3);
    wait_for("the incident resolved", || async {
        let (_, html) = page(&app, &cookie, &format!("/incidents/{id}")).await;
        html.contains(r#"<b data-field="status">resolved</b>"#)
    })
    .await;
    let late = post(
        &app,
        &cookie,
        &format!("/incidents/{id}/update"),
        &[("csrf", csrf.as_str()), ("message", "Still?")],
    )
    .await;
    assert_eq!(late.status(), 409);
    assert!(late.text().await.unwrap().contains("already resolved"));
    assert_eq!(events.info().await.unwrap().state.messages, 3);

    // Signing out ends the session in the browser.
    let out = post(&app, &cookie, "/signout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status(), 303);
    assert!(out.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("forewarn_console=; Path=/console; Max-Age=0"));
}

#[tokio::test]
async fn today_counts_the_days_messages_by_rule_and_the_dead_letters_by_reason() {
    let app = spawn_app_with(with_console("")).await;
    app.publish(&delayed_event(1)).await;
    app.publish(&delayed_event(2)).await;
    app.publish_raw("events.shipment.delayed", b"{not json".to_vec())
        .await;
    app.wait_intake_idle().await;
    app.wait_sent(2).await;
    let (_, cookie) = sign_in(&app, "Dana", TOKEN).await;
    let (status, html) = page(&app, &cookie.unwrap(), "/today").await;
    assert_eq!(status, 200);
    // The rule's row: queued 0, held 0, sending 0, sent 2, failed 0, withdrawn 0, total 2.
    let row = html
        .split("<tr>")
        .find(|row| row.contains("shipment-delay-apology"))
        .unwrap_or_else(|| panic!("no row for the rule in:\n{html}"));
    let cells: Vec<&str> = row
        .split(r#"<td class="num">"#)
        .skip(1)
        .map(|cell| cell.split('<').next().unwrap())
        .collect();
    assert_eq!(cells, ["0", "0", "0", "2", "0", "0", "2"], "{row}");
    assert!(
        html.contains(r#"<tr><th scope="row">not_json</th><td class="num">1</td></tr>"#),
        "{html}"
    );
    assert!(html.contains("events.shipment.delayed"), "{html}");
}

/// How many times `stage` was timed, from forewarn's `/metrics` text (0 if never).
fn stage_count(metrics: &str, stage: &str) -> u64 {
    let name = format!("forewarn_stage_seconds_count{{stage=\"{stage}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The template page's simulate button, with `draft` in the editor for `sms.ko.hbs`.
async fn simulate_draft(app: &App, cookie: &str, csrf: &str, draft: &str) -> reqwest::Response {
    let fields = [
        ("csrf", csrf),
        ("since", "7d"),
        ("template", "delay-apology"),
        ("file", "sms.ko.hbs"),
        ("source", draft),
    ];
    post(app, cookie, "/simulate", &fields).await
}

/// The page a simulate form went to, once its report is there; its progress (read as the
/// page's script reads it) says it is done by then.
async fn simulation_report(app: &App, cookie: &str, started: reqwest::Response) -> String {
    assert_eq!(started.status(), 303);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("/console/simulations/")
        .unwrap_or_else(|| panic!("went to {location}"))
        .to_owned();
    let path = format!("/simulations/{id}");
    let html = std::sync::Mutex::new(String::new());
    wait_for("the simulation's report", || async {
        let (status, page) = page(app, cookie, &path).await;
        assert_eq!(status, 200, "{page}");
        let done = page.contains("data-simulated-events=");
        *html.lock().unwrap() = page;
        done
    })
    .await;
    let html = html.into_inner().unwrap();
    let (_, progress) = page(app, cookie, &format!("/api/simulations/{id}")).await;
    let progress: Value = serde_json::from_str(&progress).unwrap();
    assert_eq!(progress["done"], true, "{progress}");
    assert_eq!(progress["percent"], 100, "{progress}");
    html
}

#[tokio::test]
async fn the_rules_page_simulates_the_files_on_disk_and_the_template_page_its_draft() {
    let app = spawn_app_with(with_console("")).await;
    app.publish(&delayed_event(1)).await;
    app.publish(&delayed_event(2)).await;
    app.wait_intake_idle().await;
    app.wait_sent(2).await;
    let (_, cookie) = sign_in(&app, "Min-ji", TOKEN).await;
    let cookie = cookie.unwrap();
    let (_, html) = page(&app, &cookie, "/rules").await;
    let csrf = csrf_of(&html);
    let intake_batches = stage_count(&app.metrics().await, "intake.apply");
    assert!(intake_batches > 0);

    // The files on disk are the live set: two events, no difference. The replay runs in the
    // background; the form goes to its page, which shows the report once it is done.
    let response = post(
        &app,
        &cookie,
        "/simulate",
        &[("csrf", &csrf), ("since", "1d")],
    )
    .await;
    let html = simulation_report(&app, &cookie, response).await;
    assert!(html.contains(r#"data-simulated-events="2""#), "{html}");
    assert!(
        html.contains(r#"data-row="shipment-delay-apology/sms""#),
        "{html}"
    );
    for kind in ["new", "dropped", "changed_channel", "changed_offer"] {
        let zero = format!(r#"data-difference="{kind}">0<"#);
        assert!(html.contains(&zero), "no {zero} in:\n{html}");
    }
    // The replay's own batches are not the process's: on /metrics they are apart.
    let metrics = app.metrics().await;
    assert_eq!(stage_count(&metrics, "intake.apply"), intake_batches);
    assert!(
        stage_count(&metrics, "replay:intake.apply") > 0,
        "{metrics}"
    );

    // The editor's draft that these events break: 422, each failure with its event.
    let file = app.dir.path().join("templates/delay-apology/sms.ko.hbs");
    let text = std::fs::read_to_string(&file).unwrap();
    let draft = format!(
        "{}{{{{#if data.alternatives}}}} {{{{data.reason}}}}{{{{/if}}}}",
        text.trim_end()
    );
    let response = simulate_draft(&app, &cookie, &csrf, &draft).await;
    let html = simulation_report(&app, &cookie, response).await;
    assert!(html.contains(r#"data-failures="2""#), "{html}");
    assert!(html.contains("test/carrier#evt-delay-1"), "{html}");
    assert!(html.contains("data.reason"), "{html}");
    // A draft that does not pass `check` is refused at once, where the mistake is.
    let broken = format!("{text} {{{{#if}}}}");
    let response = simulate_draft(&app, &cookie, &csrf, &broken).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("sms.ko.hbs:"), "{html}");
    assert!(!html.contains("data-simulated-events="), "{html}");
    // Nothing was written: the file on disk is as it was.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[tokio::test]
async fn without_a_configured_token_the_console_says_so_and_serves_nothing_else() {
    let app = spawn_app_with(Options::default()).await;
    let response = client()
        .get(format!("{}/signin", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("no sign-in token is configured"), "{html}");
    assert!(!html.contains(r#"name="token""#));
    let (status, cookie) = sign_in(&app, "Dana", "").await;
    assert_eq!((status, cookie), (404, None));
    let today = client()
        .get(format!("{}/today", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(today.status(), 303);
}

#[tokio::test]
async fn a_console_token_variable_that_is_not_set_stops_forewarn_naming_it() {
    let app = spawn_app_with(Options::default()).await;
    // Were the variable not read first, this second process would stop on the port instead.
    let (code, out) = forewarn_cli(
        app.dir.path(),
        &["--config", app.config_path().to_str().unwrap(), "run"],
        &[("FOREWARN_CONSOLE__TOKEN_ENV", "NO_SUCH_CONSOLE_TOKEN")],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("NO_SUCH_CONSOLE_TOKEN"), "{out}");
    assert!(!out.contains("Failed to listen"), "{out}");
}

#[tokio::test]
async fn a_saved_template_goes_live_only_if_the_set_passes_check() {
    let app = spawn_app_with(with_console("[console]\nallow_edit = true\n")).await;
    let (_, cookie) = sign_in(&app, "Min-ji", TOKEN).await;
    let cookie = cookie.unwrap();
    let (_, html) = page(&app, &cookie, "/templates/delay-apology?file=sms.ko.hbs").await;
    let csrf = csrf_of(&html);
    let file = app.dir.path().join("templates/delay-apology/sms.ko.hbs");
    let before = std::fs::read_to_string(&file).unwrap();
    let save = |source: String| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        let url = format!("{}/templates/delay-apology/save", base(&app));
        async move {
            let response = client()
                .post(url)
                .header(COOKIE, cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("file", "sms.ko.hbs"),
                    ("source", &source),
                ])
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // A variable no event carries: refused with the file, line and column; nothing written.
    let (status, html) = save(format!(
        "{}\n{{{{order.no_such_field}}}}",
        before.trim_end()
    ))
    .await;
    assert_eq!(status, 422, "{html}");
    let shown = format!("{}:2:", file.display());
    assert!(html.contains(&shown), "no {shown} in:\n{html}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    // A good edit is written and the running forewarn reloads it.
    let edited = before.replace("죄송해요", "정말 죄송해요");
    assert_ne!(
        edited, before,
        "the template's apology changed; update this test"
    );
    let (status, html) = save(edited.clone()).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
    wait_for("the saved template to be reloaded", || async {
        app.metrics().await.contains("forewarn_authoring_version 2")
    })
    .await;
    assert!(app.logged("Template saved from the console")[0].contains("Min-ji"));
}

/// Runs the browser walkthrough; returns what it read. Fails with what to install when
/// Playwright or Chromium is missing.
fn walkthrough(app: &App, shots: &std::path::Path) -> Value {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `.ci/run` installs Debian's `chromium` (or set CHROMIUM)"
    );
    let output = Command::new("python3")
        .arg(repo().join("tests/console/walkthrough.py"))
        .env("CONSOLE_URL", format!("http://127.0.0.1:{}", app.http_port))
        .env("CONSOLE_TOKEN", TOKEN)
        .env("SHOTS", shots)
        .env("REGION", REGION)
        .env("CUSTOMER", "c-busan-1")
        .env("CHROMIUM", &chromium)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'playwright'"),
        "Playwright is missing: `.ci/run` installs it (python3 -m pip install playwright)"
    );
    assert!(
        output.status.success(),
        "the browser walkthrough failed (screenshots in {}):\n{stderr}\nread so far: {stdout}",
        shots.display()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap()
}

#[tokio::test]
async fn in_a_browser_cx_previews_and_edits_and_on_call_announces_and_watches_it_done() {
    let app = spawn_app_with(with_console("")).await;
    for i in 0..IN_REGION + ELSEWHERE {
        app.publish(&customer(i)).await;
    }
    app.wait_intake_idle().await;
    // One folder per backend: both test binaries run this test, perhaps at once.
    let backend = format!("{:?}", crate::BACKEND).to_lowercase();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(backend);
    let read = walkthrough(&app, &shots);

    // The Korean SMS as sent, with the segments forewarn counts for that very text — and the
    // same as `forewarn preview` reports for the same example event.
    let text = read["ko_sms_text"].as_str().unwrap();
    assert!(text.contains("죄송해요"), "{text}");
    let segments = read["ko_sms_segments"].as_u64().unwrap() as usize;
    assert_eq!(forewarn::render::measure_sms(text).segments, segments);
    assert!(read["ko_sms_encoding"].as_str().unwrap().contains("UCS-2"));
    assert_eq!(preview_cli_segments(&app, &read["example"]), segments);
    let mail = read["ko_email_html_text"].as_str().unwrap();
    assert!(mail.contains("정말 죄송합니다"), "{mail}");

    // Typing changed the preview: the new text, measured again.
    let typed = read["typed_sms_text"].as_str().unwrap();
    assert_ne!(typed, text);
    assert!(typed.contains("대체 상품도 가까운 매장에서"), "{typed}");
    let typed_segments = read["typed_sms_segments"].as_u64().unwrap() as usize;
    assert_eq!(
        forewarn::render::measure_sms(typed).segments,
        typed_segments
    );
    assert!(typed_segments > segments, "{typed_segments} vs {segments}");
    assert!(read["draft_error"]
        .as_str()
        .unwrap()
        .contains("sms.ko.hbs:1:"));

    // The dry run counted exactly the region's customers; confirmed, each was told once.
    assert_eq!(read["dry_run_count"], IN_REGION);
    assert!(read["dry_run_first_message"]
        .as_str()
        .unwrap()
        .contains("outage-started-notice"));
    assert_eq!(read["progress"]["decided"], IN_REGION);
    assert_eq!(read["progress"]["sent"], IN_REGION);
    assert_eq!(read["progress"]["queued"], 0);
    let told: Vec<String> = app
        .sandbox("sms")
        .iter()
        .filter(|l| l["rule_id"] == "outage-started-notice")
        .map(|l| l["customer_id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = (0..IN_REGION).map(|i| format!("c-busan-{i}")).collect();
    let mut told_sorted = told.clone();
    told_sorted.sort();
    expected.sort();
    assert_eq!(told_sorted, expected);

    // The customer's timeline showed that message, masked until revealed — and the reveal
    // was logged with who did it.
    let timeline = read["timeline_message"].as_str().unwrap();
    assert!(timeline.contains("sent"), "{timeline}");
    assert!(
        timeline.contains("카드") || timeline.contains("Card"),
        "{timeline}"
    );
    assert_ne!(read["masked_phone"], "+821055550001");
    assert_eq!(read["revealed_phone"], "+821055550001");
    let reveals = app.logged("Contact details revealed in the console");
    assert_eq!(reveals.len(), 1);
    assert!(reveals[0].contains("Dana (on call)") && reveals[0].contains("c-busan-1"));

    // The simulation from the rules page replayed the incident's fan-out too: the same
    // messages to the same customers, no difference.
    assert!(read["simulated_events"].as_u64().unwrap() > IN_REGION as u64);
    assert_eq!(read["simulated_outage_sms"], IN_REGION);
    assert_eq!(
        read["simulated_differences"],
        json!({"new": 0, "dropped": 0, "changed_channel": 0, "changed_offer": 0})
    );

    // In Korean, today's page counts those messages.
    let today = read["today_ko"].as_str().unwrap();
    assert!(today.contains("outage-started-notice"), "{today}");
    assert_eq!(read["script_errors"], json!([]));
    for shot in [
        "01-signin",
        "04-template-ko",
        "07-dry-run",
        "08-incident-done",
        "09-customer",
        "09b-simulation",
        "10-today-ko",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}");
    }
}

/// The SMS segments `forewarn preview --locale ko` reports for the example the page chose.
fn preview_cli_segments(app: &App, example: &Value) -> usize {
    let index: usize = example.as_str().unwrap().parse().unwrap();
    let examples =
        forewarn::authoring::examples::Examples::read(&repo().join("examples/events")).unwrap();
    let chosen = &examples.events[index];
    let line = std::fs::read_to_string(&chosen.file)
        .unwrap()
        .lines()
        .nth(chosen.line - 1)
        .unwrap()
        .to_owned();
    let event = app.dir.path().join("example.json");
    std::fs::write(&event, line).unwrap();
    let (code, out) = forewarn_cli(
        app.dir.path(),
        &[
            "--config",
            app.config_path().to_str().unwrap(),
            "preview",
            "--template",
            "delay-apology",
            "--locale",
            "ko",
            "--event",
            event.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let sms = out.split("── SMS").nth(1).expect("an SMS section");
    let segments = sms
        .lines()
        .find_map(|l| l.trim().strip_suffix(" segment(s)"))
        .expect("a segment count");
    segments.rsplit(' ').next().unwrap().parse().unwrap()
}
