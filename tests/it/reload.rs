//! Rules and templates change while forewarn runs; a bad change never stops the good set.

use crate::helpers::*;

fn last_sms_body(app: &App) -> String {
    app.sandbox("sms")
        .last()
        .and_then(|m| m["body"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until a reload is refused, and checks the log says why with `reason`.
async fn wait_refused(app: &App, reason: &str) {
    wait_for("the refusal", || async {
        app.log().contains("the last good set keeps serving")
    })
    .await;
    assert!(app.log().contains(reason), "{}", app.log());
}

#[tokio::test]
async fn an_edited_template_is_used_at_once_and_a_bad_edit_keeps_the_last_good_set() {
    let app = spawn_app_with(Options {
        own_authoring: true,
        ..Options::default()
    })
    .await;
    app.publish(&delayed_event(1)).await;
    app.wait_sent(1).await;
    assert!(
        last_sms_body(&app).contains("죄송해요"),
        "{}",
        last_sms_body(&app)
    );

    let template = app.dir.path().join("templates/delay-apology/sms.ko.hbs");
    std::fs::write(
        &template,
        "[슈즈샵] {{customer.name}}님, 배송이 늦어져 죄송합니다. (v2)",
    )
    .unwrap();
    wait_for("the reload", || async {
        app.log().contains("Rules and templates reloaded.")
    })
    .await;
    app.publish(&delayed_event(2)).await;
    app.wait_sent(2).await;
    assert!(
        last_sms_body(&app).contains("(v2)"),
        "{}",
        last_sms_body(&app)
    );

    std::fs::write(
        app.dir.path().join("rules/bad.toml"),
        "[[rule]]\nid = \"bad\"\non = [\"shipment.teleported\"]\ntemplate = \"delay-apology\"\nchannels = [\"sms\"]\n",
    )
    .unwrap();
    wait_refused(&app, "bad.toml:3:7: unknown event type").await;
    app.publish(&delayed_event(3)).await;
    app.wait_sent(3).await;
    assert!(
        last_sms_body(&app).contains("(v2)"),
        "{}",
        last_sms_body(&app)
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("forewarn_authoring_version 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("forewarn_authoring_reloads_refused_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_template_an_example_event_cannot_fill_is_refused_on_reload_as_check_says() {
    let app = spawn_app_with(Options {
        own_authoring: true,
        ..Options::default()
    })
    .await;
    // It parses; but no example delay carries `data.carrier_phone`: `check` refuses it, and so
    // does the reload, with the same line.
    std::fs::write(
        app.dir.path().join("templates/delay-apology/sms.ko.hbs"),
        "[슈즈샵] {{customer.name}}님, 문의: {{data.carrier_phone}}",
    )
    .unwrap();
    wait_refused(
        &app,
        "templates/delay-apology/sms.ko.hbs:1:31: `data.carrier_phone` is missing",
    )
    .await;
    app.publish(&delayed_event(1)).await;
    app.wait_sent(1).await;
    assert!(
        last_sms_body(&app).contains("죄송해요"),
        "the last good set: {}",
        last_sms_body(&app)
    );
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_templates() {
    let app = spawn_app().await;
    assert!(!app.log().contains("Rules and templates reloaded."));
    app.signal("HUP");
    wait_for("the reload", || async {
        app.log().contains("Rules and templates reloaded.")
    })
    .await;
    assert!(app.log().contains("version=2"), "{}", app.log());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("forewarn_authoring_version 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_edited_risk_model_applies_at_once_and_a_bad_one_keeps_the_last_good_model() {
    let app = spawn_app_with(Options {
        own_authoring: true,
        dispatch: false,
        ..Options::default()
    })
    .await;
    let churn_model = |event: &'static str| {
        let app = &app;
        async move {
            let risk = app.explanation(event).await;
            risk["churn"]["model"].as_str().unwrap().to_owned()
        }
    };
    app.publish(&delayed_event(1)).await;
    app.wait_intake_idle().await;
    assert_eq!(churn_model("evt-delay-1").await, "builtin-churn-2026-11");

    let file = app.dir.path().join("rules/risk.toml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, shipped.replace("builtin-churn-2026-11", "churn-v2")).unwrap();
    wait_for("the reload", || async {
        app.log().contains("Rules and templates reloaded.")
    })
    .await;
    app.publish(&delayed_event(2)).await;
    app.wait_intake_idle().await;
    assert_eq!(churn_model("evt-delay-2").await, "churn-v2");

    // A weight for a feature that does not exist: refused, and churn-v2 keeps scoring.
    std::fs::write(
        &file,
        shipped
            .replace("builtin-churn-2026-11", "churn-v3")
            .replace("first_order = 0.6", "first_orders = 0.6"),
    )
    .unwrap();
    wait_refused(&app, "unknown feature `first_orders` in [churn.weights]").await;
    app.publish(&delayed_event(3)).await;
    app.wait_intake_idle().await;
    assert_eq!(churn_model("evt-delay-3").await, "churn-v2");
}
