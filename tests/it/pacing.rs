//! Pacing: a channel's gateway is called no faster than `[pacing.<channel>]` allows.

use chrono::{DateTime, Utc};

use crate::helpers::*;

#[tokio::test]
async fn a_rate_limited_channel_spreads_a_burst_over_time() {
    let app = spawn_app_with(Options {
        extra_config: "\n[pacing.sms]\nrate_per_second = 4\nburst = 1\n".into(),
        ..Options::default()
    })
    .await;
    let n = 9;
    for i in 0..n {
        app.publish(&delayed_event(i)).await;
    }
    app.wait_sent(n as u64).await;

    let times: Vec<DateTime<Utc>> = app
        .sandbox("sms")
        .iter()
        .map(|m| m["sent_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), n);
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    // Nine requests at four a second with no burst: at least eight quarter-second gaps.
    assert!(
        spread >= chrono::Duration::milliseconds(1900),
        "nine messages went out within {spread}"
    );
}
