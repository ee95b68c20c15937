//! `herald bench ingest` through the real binary: it starts its own node and baseline as
//! processes, drives both, and ends with one parseable JSON line carrying the ratio.

mod common;

/// A short run reports events accepted by Herald and by the baseline, and their ratio.
#[test]
fn bench_ingest_reports_a_json_line() {
    let output = common::herald()
        .args([
            "bench",
            "ingest",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "4",
            "--shards",
            "2",
        ])
        .output()
        .expect("run herald bench ingest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let report: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(report["workload"], "ingest");
    assert_eq!(report["unit"], "events/s");
    assert_eq!(report["failed_events"], 0);
    let value = report["value"].as_f64().unwrap();
    let baseline = report["baseline"].as_f64().unwrap();
    assert!(value > 0.0 && baseline > 0.0, "{report}");
    let ratio = report["ratio"].as_f64().unwrap();
    assert!((ratio - value / baseline).abs() < 0.01, "{report}");
}

/// A small campaign run reaches every member of its audience once through the null sink,
/// every triggered message reaches the bench's webhook, and the JSON line says so.
#[test]
fn bench_campaign_reaches_the_whole_audience() {
    let output = common::herald()
        .args([
            "bench",
            "campaign",
            "--endpoints",
            "2000",
            "--events-per-second",
            "200",
            "--trigger-seconds",
            "2",
            "--shards",
            "2",
        ])
        .output()
        .expect("run herald bench campaign");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let report: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(report["workload"], "campaign");
    assert_eq!(report["unit"], "messages/s");
    assert_eq!(report["audience"], 1000);
    assert_eq!(report["messages"], 1000);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["trigger_events"], 400);
    assert_eq!(report["trigger_messages"], 400);
    assert!(report["trigger_p99_ms"].as_f64().is_some(), "{report}");
    let value = report["value"].as_f64().unwrap();
    let baseline = report["baseline"].as_f64().unwrap();
    assert!(value > 0.0 && baseline > 0.0, "{report}");
    let ratio = report["ratio"].as_f64().unwrap();
    assert!((ratio - value / baseline).abs() < 0.01, "{report}");
}
