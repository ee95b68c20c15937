//! Channel settings through a real server: update and read back without secrets, secrets
//! kept across updates, bad input named per field, unknown projects, deletion with the
//! channel and with the project.

use std::collections::HashMap;

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::channel_response::Settings;
use herald_proto::v1::channels_client::ChannelsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

struct Fixture {
    _dir: tempfile::TempDir,
    _node: RunningNode,
    projects: ProjectsClient<Channel>,
    channels: ChannelsClient<Channel>,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.cluster.shards = 2;
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        _node: node,
        projects: ProjectsClient::new(channel.clone()),
        channels: ChannelsClient::new(channel),
    }
}

async fn create_project(fixture: &mut Fixture) -> String {
    fixture
        .projects
        .create_project(pb::CreateProjectRequest {
            name: "shop".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id
}

fn email(password: &str) -> pb::EmailChannel {
    pb::EmailChannel {
        enabled: true,
        host: "smtp.shop.example".into(),
        port: 587,
        tls: "starttls".into(),
        username: "herald".into(),
        password: password.into(),
        from_address: "news@shop.example".into(),
        from_name: "Shop News".into(),
        has_password: false,
    }
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// An email channel reads back as written, with the password replaced by `has_password`;
/// an update without a password keeps the stored one; GetChannels lists configured channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_settings_round_trip_without_secrets() {
    let mut f = start().await;
    let project = create_project(&mut f).await;

    let unconfigured = f
        .channels
        .get_email_channel(pb::GetChannelRequest {
            project_id: project.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unconfigured.configured && unconfigured.settings.is_none());

    let updated = f
        .channels
        .update_email_channel(pb::UpdateEmailChannelRequest {
            project_id: project.clone(),
            channel: Some(email("s3cret")),
        })
        .await
        .unwrap()
        .into_inner();
    let expected = pb::EmailChannel {
        password: String::new(),
        has_password: true,
        tls: "STARTTLS".into(),
        ..email("")
    };
    assert_eq!(updated.settings, Some(Settings::Email(expected.clone())));

    // A change of sender without the password keeps the password.
    let renamed = pb::EmailChannel {
        from_name: "Shop".into(),
        ..email("")
    };
    f.channels
        .update_email_channel(pb::UpdateEmailChannelRequest {
            project_id: project.clone(),
            channel: Some(renamed),
        })
        .await
        .unwrap();
    let read = f
        .channels
        .get_email_channel(pb::GetChannelRequest {
            project_id: project.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.configured);
    assert_eq!(read.channel_type, "EMAIL");
    assert_eq!(
        read.settings,
        Some(Settings::Email(pb::EmailChannel {
            from_name: "Shop".into(),
            ..expected
        }))
    );

    f.channels
        .update_in_app_channel(pb::UpdateInAppChannelRequest {
            project_id: project.clone(),
            channel: Some(pb::InAppChannel { enabled: true }),
        })
        .await
        .unwrap();
    let all = f
        .channels
        .get_channels(pb::GetChannelRequest {
            project_id: project.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let types: Vec<&str> = all
        .channels
        .iter()
        .map(|c| c.channel_type.as_str())
        .collect();
    assert_eq!(types, ["EMAIL", "IN_APP"]);
}

/// SMS settings with origination identities round-trip, the API key is never answered, and
/// the rate defaults to 20 per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_settings_round_trip_with_identities() {
    let mut f = start().await;
    let project = create_project(&mut f).await;
    let identities = vec![
        pb::OriginationIdentity {
            kind: "SHORT_CODE".into(),
            value: "12345".into(),
            country: "US".into(),
        },
        pb::OriginationIdentity {
            kind: "SENDER_ID".into(),
            value: "Shop".into(),
            country: "GB".into(),
        },
    ];
    let read = f
        .channels
        .update_sms_channel(pb::UpdateSmsChannelRequest {
            project_id: project.clone(),
            channel: Some(pb::PhoneChannel {
                enabled: true,
                base_url: "http://127.0.0.1:9/sms".into(),
                account: "acct".into(),
                api_key: "key".into(),
                origination_identities: identities.clone(),
                rate_per_second: 0,
                has_api_key: false,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Settings::Sms(sms)) = read.settings else {
        panic!("sms settings expected: {read:?}");
    };
    assert_eq!(sms.api_key, "");
    assert!(sms.has_api_key);
    assert_eq!(sms.rate_per_second, 20);
    assert_eq!(sms.origination_identities, identities);
}

/// Bad settings are refused whole, every bad field named with its path; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_name_every_field() {
    let mut f = start().await;
    let project = create_project(&mut f).await;
    let status = f
        .channels
        .update_email_channel(pb::UpdateEmailChannelRequest {
            project_id: project.clone(),
            channel: Some(pb::EmailChannel {
                host: "".into(),
                port: 70_000,
                tls: "ssl3".into(),
                from_address: "news".into(),
                ..email("x")
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violations(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "channel.from_address",
            "channel.host",
            "channel.port",
            "channel.tls"
        ]
    );

    let status = f
        .channels
        .update_sms_channel(pb::UpdateSmsChannelRequest {
            project_id: project.clone(),
            channel: Some(pb::PhoneChannel {
                base_url: "not a url".into(),
                origination_identities: vec![pb::OriginationIdentity {
                    kind: "PIGEON".into(),
                    value: "+15550000000".into(),
                    country: String::new(),
                }],
                ..pb::PhoneChannel::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violations(&status),
        ["channel.origination_identities[0].kind", "channel.base_url"]
    );

    let status = f
        .channels
        .update_custom_channel(pb::UpdateCustomChannelRequest {
            project_id: project.clone(),
            channel: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&status), ["channel"]);

    let status = f
        .channels
        .delete_channel(pb::DeleteChannelRequest {
            project_id: project.clone(),
            channel_type: "FAX".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&status), ["channel_type"]);

    let read = f
        .channels
        .get_email_channel(pb::GetChannelRequest {
            project_id: project,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!read.configured, "nothing was stored");
}

/// A project that does not exist is NOT_FOUND for reads, updates and deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_project_is_not_found() {
    let mut f = start().await;
    let missing = "no-such-project".to_string();
    let status = f
        .channels
        .get_email_channel(pb::GetChannelRequest {
            project_id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = f
        .channels
        .update_email_channel(pb::UpdateEmailChannelRequest {
            project_id: missing.clone(),
            channel: Some(email("x")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = f
        .channels
        .delete_channel(pb::DeleteChannelRequest {
            project_id: missing,
            channel_type: "EMAIL".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// DeleteChannel forgets one channel and says whether it existed; once the project is
/// deleted its channels are NOT_FOUND (the state machine drops them with the project).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_deleted_alone_and_with_their_project() {
    let mut f = start().await;
    let project = create_project(&mut f).await;
    f.channels
        .update_email_channel(pb::UpdateEmailChannelRequest {
            project_id: project.clone(),
            channel: Some(email("x")),
        })
        .await
        .unwrap();
    let deleted = f
        .channels
        .delete_channel(pb::DeleteChannelRequest {
            project_id: project.clone(),
            channel_type: "email".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    let again = f
        .channels
        .delete_channel(pb::DeleteChannelRequest {
            project_id: project.clone(),
            channel_type: "EMAIL".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.deleted);

    f.channels
        .update_in_app_channel(pb::UpdateInAppChannelRequest {
            project_id: project.clone(),
            channel: Some(pb::InAppChannel { enabled: true }),
        })
        .await
        .unwrap();
    f.projects
        .delete_project(pb::DeleteProjectRequest {
            project_id: project.clone(),
        })
        .await
        .unwrap();
    let status = f
        .channels
        .get_channels(pb::GetChannelRequest {
            project_id: project,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}
