//! The README walkthrough through the real binary: a newcomer creates a project, imports
//! endpoints from a CSV (bad rows reported by line), sends events, reads an endpoint back,
//! and Prometheus sees it all.

mod common;

use std::io::Write;
use std::process::Output;

use common::{Server, herald, http_get};

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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The CLI drives every step of the quick start against a real node.
#[test]
fn readme_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 4);

    let created = run(&server, &["project", "create", "shop", "--json"]);
    let project: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json project");
    let project_id = project["project_id"].as_str().unwrap().to_string();

    // 300 endpoints, one with a bad address on file line 102.
    let csv = dir.path().join("endpoints.csv");
    let mut file = std::fs::File::create(&csv).unwrap();
    writeln!(
        file,
        "id,channel_type,address,user_id,timezone,attributes.plan,metrics.score"
    )
    .unwrap();
    for i in 0..300 {
        let address = if i == 100 {
            "not-an-email".to_string()
        } else {
            format!("user{i}@example.com")
        };
        writeln!(
            file,
            "e{i},EMAIL,{address},u{},America/Sao_Paulo,pro;annual,{i}",
            i % 100
        )
        .unwrap();
    }
    drop(file);
    let imported = stdout(&run(
        &server,
        &[
            "endpoint",
            "import",
            "--project",
            &project_id,
            csv.to_str().unwrap(),
        ],
    ));
    assert!(
        imported.contains("rows read 300, imported 299, rejected 1"),
        "{imported}"
    );
    assert!(imported.contains("line 102"), "{imported}");
    assert!(imported.contains("not an email address"), "{imported}");

    run(
        &server,
        &[
            "endpoint",
            "put",
            "--project",
            &project_id,
            "--id",
            "e-cli",
            "--channel",
            "SMS",
            "--address",
            "+5511987654321",
            "--attr",
            "plan=pro",
            "--user",
            "u1",
        ],
    );

    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"endpoint_id\":\"e1\",\"event_type\":\"_session.start\",\"timestamp\":\"2026-11-25T10:00:00Z\"}\n\
         {\"endpoint_id\":\"e2\",\"event_type\":\"product.view\",\"metrics\":{\"price\":19.9}}\n",
    )
    .unwrap();
    let sent = stdout(&run(
        &server,
        &[
            "events",
            "put",
            "--project",
            &project_id,
            events.to_str().unwrap(),
        ],
    ));
    assert!(
        sent.contains("rows read 2, accepted 2, rejected 0"),
        "{sent}"
    );

    let endpoint = run(
        &server,
        &[
            "endpoint",
            "get",
            "--project",
            &project_id,
            "--id",
            "e1",
            "--json",
        ],
    );
    let endpoint: serde_json::Value = serde_json::from_slice(&endpoint.stdout).unwrap();
    assert_eq!(endpoint["address"], "user1@example.com");
    assert_eq!(
        endpoint["attributes"]["plan"],
        serde_json::json!(["pro", "annual"])
    );

    let user = stdout(&run(
        &server,
        &["endpoint", "user", "--project", &project_id, "--user", "u1"],
    ));
    for id in ["e1", "e101", "e201", "e-cli"] {
        assert!(user.contains(id), "user u1 lists {id}: {user}");
    }

    let created = run(
        &server,
        &[
            "template",
            "create",
            "--project",
            &project_id,
            "--name",
            "welcome",
            "--type",
            "EMAIL",
            "--subject",
            "Hi {{User.UserAttributes.FirstName}}",
            "--html",
            "<p>Your plan: {{Attributes.plan}}</p>",
            "--default",
            "User.UserAttributes.FirstName=friend",
            "--json",
        ],
    );
    let template: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(template["version"], 1);
    assert_eq!(
        template["default_substitutions"]["User.UserAttributes.FirstName"],
        "friend"
    );
    let listed = stdout(&run(
        &server,
        &["template", "list", "--project", &project_id],
    ));
    assert!(
        listed.contains("welcome") && listed.contains("EMAIL"),
        "{listed}"
    );

    let missing = herald()
        .args([
            "endpoint",
            "get",
            "--project",
            &project_id,
            "--id",
            "nope",
            "--server",
            &server.addr,
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .to_lowercase()
            .contains("not found")
    );

    // Raft state and stored endpoints are published every second: poll until they show.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut metrics = http_get(&server.metrics_addr, "/metrics");
    while !metrics.contains("herald_endpoints_stored 300") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        metrics = http_get(&server.metrics_addr, "/metrics");
    }
    for name in [
        "herald_requests_total",
        "herald_request_duration_seconds",
        "herald_events_ingested_total 2",
        "herald_raft_term",
        "herald_raft_commit_index",
        "herald_fsync_batch_size",
        "herald_endpoints_stored 300",
    ] {
        assert!(
            metrics.contains(name),
            "metrics lack {name}:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("endpoints"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(server.terminate().success());
}
