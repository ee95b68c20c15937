//! Issue 5's walkthrough from the CLI, through the real binary: a user imports endpoints in
//! several time zones, creates a segment and a personalised template, creates a campaign in
//! local time with quiet hours and a daily cap, watches its runs, reads its KPIs, and the
//! outbox holds exactly the right messages.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Output;
use std::time::Duration;

use chrono::{Timelike, Utc};
use common::{Server, herald};

fn run(server: &Server, args: &[&str]) -> Output {
    let output = herald()
        .args(args)
        .args(["--server", &server.addr])
        .output()
        .expect("run herald");
    assert!(
        output.status.success(),
        "herald {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("json output")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Outbox email lines per endpoint: (message id, subject).
fn outbox(data_dir: &std::path::Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut lines: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(data_dir.join("outbox/email.jsonl")) {
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            lines
                .entry(value["endpoint_id"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    value["message_id"].as_str().unwrap().to_string(),
                    value["content"]["Email"]["subject"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ));
        }
    }
    lines
}

/// Endpoint zones: where the run's clock time has come (Kathmandu, UTC+05:45; Tongatapu,
/// UTC+13) and where it has not (New York); Tongatapu's clock is inside the quiet hours.
const ZONES: [(&str, &str); 3] = [
    ("ktm", "Asia/Kathmandu"),
    ("tbu", "Pacific/Tongatapu"),
    ("nyc", "America/New_York"),
];

#[test]
fn cli_local_time_campaign_with_quiet_hours_and_a_daily_cap() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir, 4);
    let project = json(&run(&server, &["project", "create", "shop", "--json"]))["project_id"]
        .as_str()
        .unwrap()
        .to_string();

    let csv = dir.path().join("endpoints.csv");
    let mut file = std::fs::File::create(&csv).unwrap();
    writeln!(
        file,
        "id,channel_type,address,user_id,timezone,attributes.plan,user_attributes.FirstName"
    )
    .unwrap();
    for (prefix, zone) in ZONES {
        for i in 0..20 {
            let plan = if i % 2 == 0 { "pro" } else { "free" };
            writeln!(
                file,
                "{prefix}{i},EMAIL,{prefix}{i}@example.com,u-{prefix}{i},{zone},{plan},Name-{prefix}{i}"
            )
            .unwrap();
        }
    }
    drop(file);
    let imported = text(&run(
        &server,
        &[
            "endpoint",
            "import",
            "--project",
            &project,
            csv.to_str().unwrap(),
        ],
    ));
    assert!(imported.contains("imported 60"), "{imported}");

    let segment = dir.path().join("segment.json");
    std::fs::write(
        &segment,
        r#"{"name":"pro","rule":{"Dimensions":{"demographic":{},"location":{},"attributes":{"plan":{"kind":"Inclusive","values":["pro"]}},"metrics":{},"user_attributes":{}}}}"#,
    )
    .unwrap();
    let segment_id = json(&run(
        &server,
        &[
            "segment",
            "create",
            "--project",
            &project,
            "--file",
            segment.to_str().unwrap(),
            "--json",
        ],
    ))["segment_id"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        &server,
        &[
            "template",
            "create",
            "--project",
            &project,
            "--name",
            "morning",
            "--type",
            "EMAIL",
            "--subject",
            "Good morning {{User.UserAttributes.FirstName}}",
            "--html",
            "<p>Your plan: {{Attributes.plan}}</p>",
            "--text",
            "Your plan: {{Attributes.plan}}",
        ],
    );

    // The run's clock time is now (as a UTC wall clock): past in Kathmandu and Tongatapu,
    // hours away in New York. Quiet hours cover Tongatapu's clock now.
    let now = Utc::now();
    let start = (now + chrono::Duration::seconds(1)).to_rfc3339();
    let tongatapu_hour = (now.hour() + 13) % 24;
    let quiet_start = format!("{:02}:00", (tongatapu_hour + 23) % 24);
    let quiet_end = format!("{:02}:00", (tongatapu_hour + 1) % 24);
    let created = json(&run(
        &server,
        &[
            "campaign",
            "create",
            "--project",
            &project,
            "--name",
            "good morning",
            "--segment",
            &segment_id,
            "--email-template",
            "morning",
            "--start",
            &start,
            "--frequency",
            "ONCE",
            "--local-time",
            "--timezone",
            "UTC",
            "--quiet-start",
            &quiet_start,
            "--quiet-end",
            &quiet_end,
            "--daily-cap",
            "1",
            "--json",
        ],
    ));
    let campaign = created["campaign_id"].as_str().unwrap().to_string();
    assert_eq!(created["limits"]["daily"], 1, "{created}");

    // Watch the runs until Kathmandu's 10 and Tongatapu's 10 are done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let activity = loop {
        let activities = json(&run(
            &server,
            &[
                "campaign",
                "activities",
                "--project",
                &project,
                "--campaign",
                &campaign,
                "--json",
            ],
        ));
        let first = activities
            .as_array()
            .or_else(|| activities["activities"].as_array())
            .and_then(|runs| runs.first().cloned());
        if let Some(first) = first
            && first["counts"]["targeted"] == 20
        {
            break first;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not progress: {activities}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(activity["state"], "EXECUTING", "New York is still to come");
    assert_eq!(activity["counts"]["delivered"], 10, "{activity}");
    assert_eq!(activity["counts"]["quiet_time"], 10, "{activity}");
    let table = text(&run(
        &server,
        &[
            "campaign",
            "activities",
            "--project",
            &project,
            "--campaign",
            &campaign,
        ],
    ));
    assert!(table.contains("EXECUTING"), "{table}");

    // Exactly Kathmandu's pro endpoints, once each, personalised.
    let lines = outbox(&data_dir);
    let expected: Vec<String> = (0..20).step_by(2).map(|i| format!("ktm{i}")).collect();
    let mut got: Vec<String> = lines.keys().cloned().collect();
    got.sort_by_key(|id| id[3..].parse::<u32>().unwrap());
    assert_eq!(got, expected);
    for (endpoint, messages) in &lines {
        assert_eq!(messages.len(), 1, "{endpoint}: {messages:?}");
        assert_eq!(messages[0].1, format!("Good morning Name-{endpoint}"));
    }

    let today = now.format("%Y-%m-%d").to_string();
    let kpi = |name: &str| {
        json(&run(
            &server,
            &[
                "kpi",
                "campaign",
                "--project",
                &project,
                "--campaign",
                &campaign,
                "--kpi",
                name,
                "--start",
                &today,
                "--end",
                &today,
                "--json",
            ],
        ))
    };
    let attempted = kpi("attempted-deliveries");
    assert_eq!(attempted["rows"][0]["value"], 10.0, "{attempted}");
    let rate = kpi("successful-delivery-rate");
    assert_eq!(rate["rows"][0]["value"], 1.0, "{rate}");
    let table = text(&run(
        &server,
        &[
            "kpi",
            "campaign",
            "--project",
            &project,
            "--campaign",
            &campaign,
            "--kpi",
            "unique-deliveries",
            "--start",
            &today,
            "--end",
            &today,
        ],
    ));
    assert!(table.contains(&today) && table.contains("10"), "{table}");
}

/// SEG-3 with CMP-3 from the CLI: an import job defines a segment of the endpoints it wrote,
/// and an event campaign on that segment answers a purchase of an imported endpoint, not of
/// another one.
#[test]
fn cli_event_campaign_on_an_imported_segment() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir, 4);
    let project = json(&run(&server, &["project", "create", "shop", "--json"]))["project_id"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = dir.path().join("vip.csv");
    std::fs::write(
        &csv,
        "id,channel_type,address,user_attributes.FirstName\n\
         vip1,EMAIL,vip1@example.com,Ana\n\
         vip2,EMAIL,vip2@example.com,Bo\n",
    )
    .unwrap();
    let job = json(&run(
        &server,
        &[
            "import",
            "create",
            "--project",
            &project,
            csv.to_str().unwrap(),
            "--define-segment",
            "vips",
            "--json",
        ],
    ));
    assert_eq!(job["state"], "COMPLETED", "{job}");
    let segment_id = job["segment_id"].as_str().unwrap().to_string();
    assert!(!segment_id.is_empty(), "{job}");
    run(
        &server,
        &[
            "endpoint",
            "put",
            "--project",
            &project,
            "--id",
            "other",
            "--channel",
            "EMAIL",
            "--address",
            "other@example.com",
        ],
    );
    let end = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let campaign = json(&run(
        &server,
        &[
            "campaign",
            "create",
            "--project",
            &project,
            "--name",
            "thanks",
            "--segment",
            &segment_id,
            "--email-subject",
            "Thanks {{User.UserAttributes.FirstName}}",
            "--email-html",
            "<p>Thanks</p>",
            "--start",
            "IMMEDIATE",
            "--end",
            &end,
            "--event-type",
            "purchase",
            "--json",
        ],
    ));
    let campaign_id = campaign["campaign_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = json(&run(
            &server,
            &[
                "campaign",
                "get",
                "--project",
                &project,
                "--campaign",
                &campaign_id,
                "--json",
            ],
        ))["state"]
            .clone();
        if state == "EXECUTING" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "state {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The node refreshes its live event campaigns every tick.
    std::thread::sleep(Duration::from_millis(600));
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"endpoint_id\":\"vip2\",\"event_type\":\"purchase\"}\n\
         {\"endpoint_id\":\"other\",\"event_type\":\"purchase\"}\n",
    )
    .unwrap();
    run(
        &server,
        &[
            "events",
            "put",
            "--project",
            &project,
            events.to_str().unwrap(),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outbox(&data_dir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no triggered message");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let lines = outbox(&data_dir);
    assert_eq!(lines.keys().cloned().collect::<Vec<_>>(), ["vip2"]);
    assert_eq!(lines["vip2"][0].1, "Thanks Bo");
}
