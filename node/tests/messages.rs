//! Direct sends and one-time passwords through a real server (SPEC CHN-6): with no channel
//! configured every message lands in the outbox under the data dir, in-app messages in the
//! endpoint's inbox, and every send to an endpoint records its message event.

use std::collections::HashMap;
use std::path::Path;

use herald_node::config::Config;
use herald_node::domain::event::Event;
use herald_node::server::RunningNode;
use herald_node::storage::{Store, keys, keys::tag};
use herald_proto::v1 as pb;
use herald_proto::v1::endpoints_client::EndpointsClient;
use herald_proto::v1::messages_client::MessagesClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use tonic::Code;
use tonic::transport::Channel;

const SHARDS: u32 = 4;

struct Fixture {
    node: RunningNode,
    channel: Channel,
    project: String,
}

async fn start(dir: &Path) -> Fixture {
    let mut config = Config::ephemeral(dir);
    config.cluster.shards = SHARDS;
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "messages".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    Fixture {
        node,
        channel,
        project,
    }
}

fn values(items: &[&str]) -> pb::AttributeValues {
    pb::AttributeValues {
        values: items.iter().map(|v| v.to_string()).collect(),
    }
}

async fn put_endpoint(
    fixture: &Fixture,
    endpoint_id: &str,
    channel: pb::ChannelType,
    address: &str,
    user: (&str, &str),
    opt_out: pb::OptOut,
) {
    EndpointsClient::new(fixture.channel.clone())
        .update_endpoint(pb::UpdateEndpointRequest {
            project_id: fixture.project.clone(),
            endpoint_id: endpoint_id.into(),
            endpoint: Some(pb::EndpointRequest {
                address: address.into(),
                channel_type: channel.into(),
                opt_out: opt_out.into(),
                attributes: HashMap::from([("plan".to_string(), values(&["gold"]))]),
                user: Some(pb::EndpointUser {
                    user_id: user.0.into(),
                    user_attributes: HashMap::from([("FirstName".to_string(), values(&[user.1]))]),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// The outbox lines of a channel (`email`, `sms`, …) under the node's data dir.
fn outbox(dir: &Path, channel: &str) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(dir.join("outbox").join(format!("{channel}.jsonl"))) {
        Ok(text) => text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn users_request(
    project: &str,
    users: &[&str],
    templates: Option<pb::TemplateConfiguration>,
    message: Option<pb::DirectMessageConfiguration>,
) -> pb::SendUsersMessagesRequest {
    pb::SendUsersMessagesRequest {
        project_id: project.into(),
        users: users
            .iter()
            .map(|user| (user.to_string(), pb::EndpointSendConfiguration::default()))
            .collect(),
        message,
        templates,
        substitutions: HashMap::from([("OrderId".to_string(), values(&["A-42"]))]),
        origination_number: String::new(),
    }
}

/// A stored template sent to a user reaches both of its endpoints, each personalised, in the
/// outbox; an opted-out user's endpoint gets OPT_OUT and nothing is written; each send to an
/// endpoint records `_email.send` with its message id and status in the endpoint's shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_send_to_users_lands_personalised_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    let project = fixture.project.clone();
    TemplatesClient::new(fixture.channel.clone())
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: Some(pb::TemplateFields {
                project_id: project.clone(),
                template_name: "receipt".into(),
                ..Default::default()
            }),
            template: Some(pb::EmailTemplate {
                subject: "Order {{OrderId}}".into(),
                html_part: "<p>Hi {{User.UserAttributes.FirstName}}</p>".into(),
                text_part: "Hi {{User.UserAttributes.FirstName}}, plan {{Attributes.plan}}, order {{OrderId}} to {{Address}}".into(),
            }),
        })
        .await
        .unwrap();
    put_endpoint(
        &fixture,
        "ada-work",
        pb::ChannelType::Email,
        "ada@work.example",
        ("ada", "Ada"),
        pb::OptOut::None,
    )
    .await;
    put_endpoint(
        &fixture,
        "ada-home",
        pb::ChannelType::Email,
        "ada@home.example",
        ("ada", "Ada"),
        pb::OptOut::None,
    )
    .await;
    put_endpoint(
        &fixture,
        "bob-mail",
        pb::ChannelType::Email,
        "bob@example.com",
        ("bob", "Bob"),
        pb::OptOut::All,
    )
    .await;

    let templates = pb::TemplateConfiguration {
        email: Some(pb::TemplateReference {
            name: "receipt".into(),
            version: 0,
        }),
        ..Default::default()
    };
    let response = MessagesClient::new(fixture.channel.clone())
        .send_users_messages(users_request(
            &project,
            &["ada", "bob"],
            Some(templates),
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let ada = &response.results["ada"].endpoints;
    assert_eq!(ada.len(), 2);
    for result in ada.values() {
        assert_eq!(result.delivery_status(), pb::DeliveryStatus::Successful);
        assert_eq!(result.status_code, 200);
        assert!(!result.message_id.is_empty());
    }
    let bob = &response.results["bob"].endpoints["bob-mail"];
    assert_eq!(bob.delivery_status(), pb::DeliveryStatus::OptOut);

    let lines = outbox(dir.path(), "email");
    assert_eq!(
        lines.len(),
        2,
        "only ada's two endpoints are written: {lines:?}"
    );
    let mut addresses: Vec<&str> = lines
        .iter()
        .map(|line| line["address"].as_str().unwrap())
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["ada@home.example", "ada@work.example"]);
    for line in &lines {
        let email = &line["content"]["Email"];
        assert_eq!(email["subject"], "Order A-42");
        assert_eq!(
            email["text_part"],
            format!(
                "Hi Ada, plan gold, order A-42 to {}",
                line["address"].as_str().unwrap()
            )
        );
        assert_eq!(line["project_id"], project.as_str());
        let endpoint_id = line["endpoint_id"].as_str().unwrap();
        assert_eq!(line["message_id"], ada[endpoint_id].message_id.as_str());
    }

    drop(fixture.channel);
    fixture.node.shutdown().await.unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events_of = |endpoint_id: &str| -> Vec<Event> {
        let shard = herald_node::domain::hashing::shard_of(&project, endpoint_id, SHARDS);
        let prefix = keys::data_key(
            herald_node::raft::shard_group(shard),
            tag::EVENT,
            &[&project, endpoint_id],
        );
        store
            .scan::<Event>(&store.data, &prefix)
            .unwrap()
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    };
    for (endpoint_id, status) in [
        ("ada-work", "SUCCESSFUL"),
        ("ada-home", "SUCCESSFUL"),
        ("bob-mail", "OPT_OUT"),
    ] {
        let events = events_of(endpoint_id);
        assert_eq!(events.len(), 1, "{endpoint_id}: {events:?}");
        assert_eq!(events[0].event_type, "_email.send");
        assert_eq!(events[0].attributes["delivery_status"], status);
        assert!(!events[0].attributes["message_id"].is_empty());
    }
}

/// Inline SMS to addresses lands in the SMS outbox with per-address substitutions; a bad
/// address gets its own failure; more than 100 recipients are refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_sms_to_addresses_and_the_recipient_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    let mut messages = MessagesClient::new(fixture.channel.clone());
    let address = |channel: pb::ChannelType, name: &str| pb::AddressConfiguration {
        channel_type: channel.into(),
        substitutions: HashMap::from([("Name".to_string(), values(&[name]))]),
    };
    let message = pb::DirectMessageConfiguration {
        sms: Some(pb::SmsTemplate {
            body: "Hello {{Name}}, order {{OrderId}}".into(),
        }),
        ..Default::default()
    };
    let response = messages
        .send_messages(pb::SendMessagesRequest {
            project_id: fixture.project.clone(),
            addresses: HashMap::from([
                (
                    "+14155550100".to_string(),
                    address(pb::ChannelType::Sms, "Ada"),
                ),
                (
                    "not-a-phone".to_string(),
                    address(pb::ChannelType::Sms, "X"),
                ),
            ]),
            message: Some(message.clone()),
            templates: None,
            substitutions: HashMap::from([("OrderId".to_string(), values(&["7"]))]),
            origination_number: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sent = &response.results["+14155550100"];
    assert_eq!(sent.delivery_status(), pb::DeliveryStatus::Successful);
    let refused = &response.results["not-a-phone"];
    assert_eq!(
        refused.delivery_status(),
        pb::DeliveryStatus::PermanentFailure
    );
    assert_eq!(refused.status_code, 400);
    let lines = outbox(dir.path(), "sms");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["address"], "+14155550100");
    assert_eq!(lines[0]["content"]["Sms"]["body"], "Hello Ada, order 7");
    assert_eq!(lines[0]["message_id"], sent.message_id.as_str());

    let too_many = (0..101)
        .map(|i| {
            (
                format!("+1415555{i:04}"),
                address(pb::ChannelType::Sms, "n"),
            )
        })
        .collect();
    let error = messages
        .send_messages(pb::SendMessagesRequest {
            project_id: fixture.project.clone(),
            addresses: too_many,
            message: Some(message),
            templates: None,
            substitutions: HashMap::new(),
            origination_number: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(outbox(dir.path(), "sms").len(), 1, "nothing of it was sent");
    fixture.node.shutdown().await.unwrap();
}

/// An in-app message sent to a user is kept in its endpoint's inbox and read by the app with
/// GetInAppMessages, rendered for the endpoint; it never goes to the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_app_send_is_read_back_by_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    put_endpoint(
        &fixture,
        "ada-app",
        pb::ChannelType::InApp,
        "ada-device",
        ("ada", "Ada"),
        pb::OptOut::None,
    )
    .await;
    let message = pb::DirectMessageConfiguration {
        in_app: Some(pb::InAppTemplate {
            layout: "TOP_BANNER".into(),
            header: "Welcome {{User.UserAttributes.FirstName}}".into(),
            body: "Order {{OrderId}} shipped".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = MessagesClient::new(fixture.channel.clone())
        .send_users_messages(users_request(
            &fixture.project,
            &["ada"],
            None,
            Some(message),
        ))
        .await
        .unwrap()
        .into_inner();
    let result = &response.results["ada"].endpoints["ada-app"];
    assert_eq!(result.delivery_status(), pb::DeliveryStatus::Successful);

    let inbox = EndpointsClient::new(fixture.channel.clone())
        .get_in_app_messages(pb::GetInAppMessagesRequest {
            project_id: fixture.project.clone(),
            endpoint_id: "ada-app".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].message_id, result.message_id);
    assert_eq!(inbox[0].layout, "TOP_BANNER");
    assert_eq!(inbox[0].header, "Welcome Ada");
    assert_eq!(inbox[0].body, "Order A-42 shipped");
    assert!(outbox(dir.path(), "in_app").is_empty());
    fixture.node.shutdown().await.unwrap();
}

/// A one-time password goes out through the outbox; the right code is valid once, wrong codes
/// consume attempts, and once the attempts are used up even the right code is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_is_valid_once_and_attempts_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    let mut messages = MessagesClient::new(fixture.channel.clone());
    let phone = "+14155550123";
    let send = |reference: &str| pb::SendOtpMessageRequest {
        project_id: fixture.project.clone(),
        destination: phone.into(),
        reference_id: reference.into(),
        brand_name: "Acme".into(),
        allowed_attempts: 2,
        ..Default::default()
    };
    let verify = |reference: &str, otp: &str| pb::VerifyOtpMessageRequest {
        project_id: fixture.project.clone(),
        destination: phone.into(),
        reference_id: reference.into(),
        otp: otp.into(),
    };
    let code_sent = |index: usize| -> String {
        let lines = outbox(dir.path(), "sms");
        let body = lines[index]["content"]["Sms"]["body"].as_str().unwrap();
        let code = body.strip_prefix("Your Acme code is ").unwrap().to_string();
        assert_eq!(code.len(), 6, "default length: {body}");
        code
    };

    let sent = messages.send_otp_message(send("login")).await.unwrap();
    let result = sent.into_inner().result.unwrap();
    assert_eq!(result.delivery_status(), pb::DeliveryStatus::Successful);
    let code = code_sent(0);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let valid =
        |response: tonic::Response<pb::VerifyOtpMessageResponse>| response.into_inner().valid;
    assert!(!valid(
        messages
            .verify_otp_message(verify("login", wrong))
            .await
            .unwrap()
    ));
    assert!(
        !valid(
            messages
                .verify_otp_message(verify("other", &code))
                .await
                .unwrap()
        ),
        "a code is bound to its reference"
    );
    assert!(valid(
        messages
            .verify_otp_message(verify("login", &code))
            .await
            .unwrap()
    ));
    assert!(
        !valid(
            messages
                .verify_otp_message(verify("login", &code))
                .await
                .unwrap()
        ),
        "a code is valid once"
    );

    messages.send_otp_message(send("pay")).await.unwrap();
    let code = code_sent(1);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        assert!(!valid(
            messages
                .verify_otp_message(verify("pay", wrong))
                .await
                .unwrap()
        ));
    }
    assert!(
        !valid(
            messages
                .verify_otp_message(verify("pay", &code))
                .await
                .unwrap()
        ),
        "no attempts left"
    );

    let error = messages
        .send_otp_message(pb::SendOtpMessageRequest {
            code_length: 9,
            ..send("bad")
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    fixture.node.shutdown().await.unwrap();
}

/// Runs the `herald` binary against the node; fails the test when it exits non-zero.
async fn herald(node: &RunningNode, arguments: &[&str]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(arguments)
        .args(["--server", &node.client_addr.to_string()]);
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "herald {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// From the CLI: an inline SMS to an address with a substitution, then a one-time password
/// read from the outbox and verified once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sends_a_message_and_an_otp() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = start(dir.path()).await;
    let project = fixture.project.as_str();
    let out = herald(
        &fixture.node,
        &[
            "send",
            "message",
            "--project",
            project,
            "--address",
            "+14155550100",
            "--channel",
            "SMS",
            "--body",
            "Hi {{Name}}",
            "--substitution",
            "Name=Ada",
            "--json",
        ],
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        answer["results"][0]["delivery_status"], "SUCCESSFUL",
        "{out}"
    );
    assert_eq!(
        outbox(dir.path(), "sms")[0]["content"]["Sms"]["body"],
        "Hi Ada"
    );

    let out = herald(
        &fixture.node,
        &[
            "send",
            "otp",
            "--project",
            project,
            "--destination",
            "+14155550199",
            "--reference",
            "login",
            "--brand",
            "Acme",
            "--code-length",
            "4",
        ],
    )
    .await;
    assert!(out.contains("SUCCESSFUL"), "{out}");
    let body = outbox(dir.path(), "sms")[1]["content"]["Sms"]["body"]
        .as_str()
        .unwrap()
        .to_string();
    let code = body.strip_prefix("Your Acme code is ").unwrap();
    assert_eq!(code.len(), 4);
    let verify = [
        "verify-otp",
        "--project",
        project,
        "--destination",
        "+14155550199",
        "--reference",
        "login",
        "--otp",
        code,
    ];
    assert_eq!(herald(&fixture.node, &verify).await.trim(), "valid");
    assert_eq!(herald(&fixture.node, &verify).await.trim(), "invalid");
    fixture.node.shutdown().await.unwrap();
}
