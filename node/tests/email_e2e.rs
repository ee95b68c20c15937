//! The whole delivery story from the CLI, through the real binary: import 10,000 endpoints
//! from a CSV, define and estimate a segment, create a personalised email template, configure
//! SMTP and send to a user id: the personalised message arrives at a real SMTP conversation;
//! a project with no channel configuration gets the same message in its outbox.

mod common;

use std::io::Write;
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::{Server, herald};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

/// An SMTP server that accepts every message and keeps the DATA of each.
async fn accepting_smtp_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ready\r\n").await.ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    if verb == "DATA" {
                        write.write_all(b"354 go ahead\r\n").await.ok();
                        let mut data = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            data.push_str(&line);
                            data.push('\n');
                        }
                        store.lock().unwrap().push(data);
                        write.write_all(b"250 queued\r\n").await.ok();
                        continue;
                    }
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 test\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(reply).await.is_err() || verb == "QUIT" {
                        break;
                    }
                }
            });
        }
    });
    (port, received)
}

/// From the CLI: import, segment, template, SMTP, send to a user; and the outbox without SMTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_import_segment_template_smtp_and_outbox() {
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
        "id,channel_type,address,user_id,platform,country,attributes.plan,user_attributes.FirstName"
    )
    .unwrap();
    for i in 0..10_000 {
        let plan = if i % 4 == 0 { "pro" } else { "free" };
        writeln!(
            file,
            "e{i},EMAIL,user{i}@example.com,u{i},ios,BR,{plan},Name{i}"
        )
        .unwrap();
    }
    drop(file);
    let imported = String::from_utf8_lossy(
        &run(
            &server,
            &[
                "endpoint",
                "import",
                "--project",
                &project,
                csv.to_str().unwrap(),
            ],
        )
        .stdout,
    )
    .into_owned();
    assert!(imported.contains("imported 10000"), "{imported}");

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
    let estimate = json(&run(
        &server,
        &[
            "segment",
            "estimate",
            "--project",
            &project,
            "--id",
            &segment_id,
            "--json",
        ],
    ));
    assert_eq!(estimate["endpoints"], 2_500);

    run(
        &server,
        &[
            "template",
            "create",
            "--project",
            &project,
            "--name",
            "welcome",
            "--type",
            "EMAIL",
            "--subject",
            "Hi {{User.UserAttributes.FirstName}}",
            "--html",
            "<p>Your plan: {{Attributes.plan}}</p>",
            "--text",
            "Your plan: {{Attributes.plan}}",
        ],
    );

    // No channel configured: the message lands in the outbox.
    let sent = json(&run(
        &server,
        &[
            "send",
            "message",
            "--project",
            &project,
            "--user",
            "u4",
            "--template",
            "welcome",
            "--json",
        ],
    ));
    assert!(sent.to_string().contains("SUCCESSFUL"), "{sent}");
    let outbox = std::fs::read_to_string(data_dir.join("outbox/email.jsonl")).unwrap();
    assert!(
        outbox.contains("Hi Name4") && outbox.contains("Your plan: pro"),
        "{outbox}"
    );

    // With SMTP configured, the personalised message reaches the SMTP server.
    let (port, received) = accepting_smtp_server().await;
    run(
        &server,
        &[
            "channel",
            "email",
            "--project",
            &project,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--tls",
            "none",
            "--from",
            "news@example.com",
        ],
    );
    let sent = json(&run(
        &server,
        &[
            "send",
            "message",
            "--project",
            &project,
            "--user",
            "u8",
            "--template",
            "welcome",
            "--json",
        ],
    ));
    assert!(sent.to_string().contains("SUCCESSFUL"), "{sent}");
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let mime = &messages[0];
    assert!(mime.contains("Subject: Hi Name8"), "{mime}");
    assert!(
        mime.contains("To: user8@example.com") || mime.contains("<user8@example.com>"),
        "{mime}"
    );
    assert!(mime.contains("Your plan: pro"), "{mime}");
    assert!(mime.contains("multipart/alternative"), "{mime}");
    let outbox_after = std::fs::read_to_string(data_dir.join("outbox/email.jsonl")).unwrap();
    assert!(
        !outbox_after.contains("Hi Name8"),
        "configured email does not go to the outbox"
    );
    assert!(server.terminate().success());
}
