//! The delivery pipeline through a real server (SPEC CHN-2, CHN-3): the per-project SMS rate
//! limit holds for a burst, even with no channel configured (the outbox is limited like a real
//! provider, so a project behaves the same before and after it configures SMS), and a provider
//! saying an address does not exist makes the endpoint INACTIVE.

use std::collections::HashMap;
use std::path::Path;

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::channels_client::ChannelsClient;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::messages_client::MessagesClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tonic::transport::Channel;

/// SMS rate limit of a project that has not configured SMS.
const DEFAULT_SMS_RATE: usize = 20;

struct Fixture {
    _node: RunningNode,
    channel: Channel,
    project: String,
}

async fn start(dir: &Path) -> Fixture {
    let node = RunningNode::start(Config::ephemeral(dir)).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "delivery".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    Fixture {
        _node: node,
        channel,
        project,
    }
}

/// The outbox lines of a channel under the node's data dir.
fn outbox(dir: &Path, channel: &str) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(dir.join("outbox").join(format!("{channel}.jsonl"))) {
        Ok(text) => text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A burst of 30 SMS in one request to a project without SMS config (default 20/s): the excess
/// is THROTTLED (429), at most the rate plus its burst go out, and the outbox holds exactly the
/// SUCCESSFUL ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_burst_over_the_default_rate_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    let addresses: HashMap<String, pb::AddressConfiguration> = (0..30)
        .map(|i| {
            (
                format!("+1415555{i:04}"),
                pb::AddressConfiguration {
                    channel_type: pb::ChannelType::Sms.into(),
                    substitutions: HashMap::new(),
                },
            )
        })
        .collect();
    let response = MessagesClient::new(fixture.channel.clone())
        .send_messages(pb::SendMessagesRequest {
            project_id: fixture.project.clone(),
            addresses,
            message: Some(pb::DirectMessageConfiguration {
                sms: Some(pb::SmsTemplate {
                    body: "sale today".into(),
                }),
                ..Default::default()
            }),
            templates: None,
            substitutions: HashMap::new(),
            origination_number: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let successful: Vec<&String> = response
        .results
        .iter()
        .filter(|(_, r)| r.delivery_status() == pb::DeliveryStatus::Successful)
        .map(|(_, r)| &r.message_id)
        .collect();
    let throttled: Vec<_> = response
        .results
        .values()
        .filter(|r| r.delivery_status() == pb::DeliveryStatus::Throttled)
        .collect();
    assert_eq!(successful.len() + throttled.len(), 30, "{response:?}");
    assert!(!throttled.is_empty(), "{response:?}");
    assert!(throttled.iter().all(|r| r.status_code == 429));
    assert!(successful.len() <= 2 * DEFAULT_SMS_RATE, "{response:?}");
    let mut sent: Vec<String> = outbox(dir.path(), "sms")
        .iter()
        .map(|line| line["message_id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = successful.into_iter().cloned().collect();
    sent.sort();
    expected.sort();
    assert_eq!(sent, expected);
}

/// An SMTP server that knows no mailbox: every RCPT gets "550 5.1.1"; counts the RCPTs.
async fn start_smtp_without_mailboxes() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let recipients = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&recipients);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counted = std::sync::Arc::clone(&counted);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ready\r\n").await.ok();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 test\r\n",
                        "RCPT" => {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            b"550 5.1.1 mailbox unavailable\r\n"
                        }
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
    (port, recipients)
}

/// A provider saying the address does not exist (SMTP 550) makes the endpoint INACTIVE, read
/// back through the API, and the next send to it answers OPT_OUT without reaching the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_address_makes_the_endpoint_inactive() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    let (port, recipients) = start_smtp_without_mailboxes().await;
    ChannelsClient::new(fixture.channel.clone())
        .update_email_channel(pb::UpdateEmailChannelRequest {
            project_id: fixture.project.clone(),
            channel: Some(pb::EmailChannel {
                enabled: true,
                host: "127.0.0.1".into(),
                port: u32::from(port),
                tls: "NONE".into(),
                from_address: "shop@example.com".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut endpoints = EndpointsClient::new(fixture.channel.clone());
    endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: fixture.project.clone(),
            endpoint_id: "gone-mail".into(),
            endpoint: Some(pb::EndpointRequest {
                address: "gone@example.com".into(),
                channel_type: pb::ChannelType::Email.into(),
                user: Some(pb::EndpointUser {
                    user_id: "gone".into(),
                    user_attributes: HashMap::new(),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let send = || {
        let mut messages = MessagesClient::new(fixture.channel.clone());
        let request = pb::SendUsersMessagesRequest {
            project_id: fixture.project.clone(),
            users: HashMap::from([("gone".to_string(), pb::EndpointSendConfiguration::default())]),
            message: Some(pb::DirectMessageConfiguration {
                email: Some(pb::EmailTemplate {
                    subject: "hello".into(),
                    html_part: "<p>hello</p>".into(),
                    text_part: "hello".into(),
                }),
                ..Default::default()
            }),
            templates: None,
            substitutions: HashMap::new(),
            origination_number: String::new(),
        };
        async move {
            messages
                .send_users_messages(request)
                .await
                .unwrap()
                .into_inner()
                .results["gone"]
                .endpoints["gone-mail"]
                .delivery_status()
        }
    };
    assert_eq!(send().await, pb::DeliveryStatus::PermanentFailure);
    let endpoint = endpoints
        .get_endpoint(pb::GetEndpointRequest {
            project_id: fixture.project.clone(),
            endpoint_id: "gone-mail".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(endpoint.endpoint_status(), pb::EndpointStatus::Inactive);
    let asked = recipients.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send().await, pb::DeliveryStatus::OptOut);
    assert_eq!(
        recipients.load(std::sync::atomic::Ordering::SeqCst),
        asked,
        "nothing more reached the server"
    );
}
