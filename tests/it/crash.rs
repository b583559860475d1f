//! A crash at any point loses nothing and duplicates nothing.

use crate::helpers::*;

#[tokio::test]
async fn killed_between_intake_and_dispatch_every_outreach_is_sent_exactly_once() {
    let n = 300;
    let mut app = spawn_app_queueing_only().await;
    for i in 0..n {
        app.publish(&delayed_event(i)).await;
    }
    app.wait_intake_idle().await;
    assert_eq!(app.counts().await.pending, n as u64);
    assert!(app.sandbox_all().is_empty());

    app.kill();
    app.restart_with(Options::default()).await;
    app.wait_sent(n as u64).await;
    // Redeliveries after the restart (if any) change nothing.
    app.wait_intake_idle().await;
    assert_eq!(app.db.count(Table::Outbox).await, n as i64);
    assert_each_key_once(&app.sandbox_all(), n);
}

#[tokio::test]
async fn killed_while_dispatching_nothing_is_lost_or_sent_twice() {
    let n = 600;
    // Small batches and one request at a time, so the kill lands mid-dispatch.
    let slow = Options {
        dispatch: true,
        outbox_batch: 5,
        concurrency: 1,
        ..Options::default()
    };
    let mut app = spawn_app_with(slow.clone()).await;
    for i in 0..n {
        app.publish(&delayed_event(i)).await;
    }
    wait_for("some messages sent", || async {
        !app.sandbox("sms").is_empty()
    })
    .await;
    app.kill();
    let sent_before = app.sandbox("sms").len();

    app.restart_with(Options::default()).await;
    app.wait_intake_idle().await;
    app.wait_sent(n as u64).await;
    assert!(sent_before < n, "the kill came after everything was sent");
    assert_each_key_once(&app.sandbox_all(), n);
    assert_eq!(app.counts().await.failed, 0);
}

#[tokio::test]
async fn sigterm_under_load_drains_and_exits_zero_with_nothing_lost() {
    let n = 2000;
    let mut app = spawn_app().await;
    let js = app.js.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..n {
            let event = delayed_event(i);
            let subject = "events.shipment.delayed".to_owned();
            js.publish(subject, event.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    wait_for("intake to be busy", || async {
        app.counts().await.pending + app.counts().await.sent > 50
    })
    .await;
    let status = app.terminate().await;
    assert!(status.success(), "exit status {status}:\n{}", app.log());
    assert!(app.log().contains("Intake stopped."), "{}", app.log());
    publisher.await.unwrap();

    app.restart_with(Options::default()).await;
    app.wait_intake_idle().await;
    app.wait_sent(n as u64).await;
    assert_eq!(app.db.count(Table::Events).await, n as i64);
    assert_each_key_once(&app.sandbox_all(), n);
}

#[tokio::test]
async fn an_event_whose_batch_cannot_be_committed_is_redelivered_not_lost() {
    let app = spawn_app_with(Options {
        busy_timeout: "50ms",
        ..Options::default()
    })
    .await;
    // Another writer holds the database: forewarn's transaction cannot commit.
    let blocker = app.db.hold_writes().await;
    app.publish(&delayed_event(1)).await;
    wait_for("a failed batch", || async {
        app.log()
            .contains("Batch not committed; it will be redelivered.")
    })
    .await;
    // Nothing was acked: the event is still pending on the consumer.
    assert!(!app.intake_idle().await);

    blocker.release().await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;
    assert_eq!(app.db.count(Table::Events).await, 1);
    assert_each_key_once(&app.sandbox_all(), 1);
}

#[tokio::test]
async fn a_batch_held_up_by_another_writer_is_logged_as_one_short_line_naming_its_stage() {
    let app = spawn_app_with(Options {
        busy_timeout: "10s",
        ..Options::default()
    })
    .await;
    // Another writer holds the database for longer than a slow stage, during a large batch.
    let blocker = app.db.hold_writes().await;
    for i in 0..600 {
        app.publish(&delayed_event(i)).await;
    }
    // The fault lasts this long; nothing is awaited through it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    blocker.release().await;
    app.wait_intake_idle().await;
    wait_for("the slow stage logged", || async {
        app.log().contains("Slow stage")
    })
    .await;
    let log = app.log();
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("Slow stage")).collect();
    assert!(
        slow.iter()
            .any(|l| l.contains("stage=\"intake.") || l.contains("stage=intake.")),
        "the held-up intake stage is named: {slow:?}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 2_000,
        "no log line carries a whole statement ({longest} characters)"
    );
}

#[tokio::test]
async fn an_unreadable_outbox_row_is_failed_alone_and_the_rest_are_sent() {
    let mut app = spawn_app_queueing_only().await;
    for i in 0..3 {
        app.publish(&delayed_event(i)).await;
    }
    app.wait_intake_idle().await;
    app.terminate().await;
    // Damaged by hand, by a bug, by a bad migration: the row can no longer be read.
    app.db.damage_content("c-1").await;

    app.restart_with(Options::default()).await;
    app.wait_sent(2).await;
    wait_for("the unreadable row to be failed", || async {
        app.counts().await.failed == 1
    })
    .await;
    let error = app.db.outbox_of("c-1").await.last_error.unwrap_or_default();
    assert!(error.starts_with("unreadable: "), "{error}");
    let sent: Vec<String> = app
        .sandbox("sms")
        .iter()
        .map(|m| m["customer_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(!sent.contains(&"c-1".to_owned()));
}
