//! Message templates through a real server: versions, the active version, listing, deletion,
//! and templates that do not parse refused with the position of the error.

use std::collections::HashMap;

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

fn fields(project: &str, name: &str) -> Option<pb::TemplateFields> {
    Some(pb::TemplateFields {
        project_id: project.into(),
        template_name: name.into(),
        default_substitutions: HashMap::from([(
            "User.UserAttributes.FirstName".to_string(),
            "friend".to_string(),
        )]),
        description: "welcome".into(),
    })
}

fn email(subject: &str) -> Option<pb::EmailTemplate> {
    Some(pb::EmailTemplate {
        subject: subject.into(),
        html_part:
            "<p>Hello {{User.UserAttributes.FirstName}}, your plan is {{Attributes.plan}}</p>"
                .into(),
        text_part: "Hello {{User.UserAttributes.FirstName}}".into(),
    })
}

/// Create, read, version, activate, list and delete templates of several types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_versions_and_active_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.cluster.shards = 2;
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "t".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let mut templates = TemplatesClient::new(channel);

    let created = templates
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: fields(&project, "welcome"),
            template: email("Hi v1"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((created.version, created.active_version), (1, 1));
    assert_eq!(created.template_type, "EMAIL");
    let again = templates
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: fields(&project, "welcome"),
            template: email("dup"),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    let v2 = templates
        .update_email_template(pb::UpdateEmailTemplateRequest {
            fields: fields(&project, "welcome"),
            template: email("Hi v2"),
            create_new_version: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v2.version, v2.active_version), (2, 2));
    let get = |version: u32| pb::GetTemplateRequest {
        project_id: project.clone(),
        template_name: "welcome".into(),
        version,
    };
    let subject = |t: &pb::TemplateResponse| match &t.content {
        Some(pb::template_response::Content::Email(e)) => e.subject.clone(),
        other => panic!("not an email template: {other:?}"),
    };
    assert_eq!(
        subject(
            &templates
                .get_email_template(get(0))
                .await
                .unwrap()
                .into_inner()
        ),
        "Hi v2"
    );
    assert_eq!(
        subject(
            &templates
                .get_email_template(get(1))
                .await
                .unwrap()
                .into_inner()
        ),
        "Hi v1"
    );

    let active = templates
        .update_template_active_version(pb::UpdateTemplateActiveVersionRequest {
            project_id: project.clone(),
            template_name: "welcome".into(),
            template_type: "EMAIL".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.active_version, 1);
    assert_eq!(
        subject(
            &templates
                .get_email_template(get(0))
                .await
                .unwrap()
                .into_inner()
        ),
        "Hi v1"
    );

    // In place update of the latest version keeps the version number.
    let replaced = templates
        .update_email_template(pb::UpdateEmailTemplateRequest {
            fields: fields(&project, "welcome"),
            template: email("Hi v2b"),
            create_new_version: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.version, 2);

    templates
        .create_sms_template(pb::CreateSmsTemplateRequest {
            fields: fields(&project, "otp"),
            template: Some(pb::SmsTemplate {
                body: "Your code is {{Code}}".into(),
            }),
        })
        .await
        .unwrap();
    let listed = templates
        .list_templates(pb::ListTemplatesRequest {
            project_id: project.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<(String, String)> = listed
        .templates
        .iter()
        .map(|t| (t.template_type.clone(), t.template_name.clone()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("EMAIL".into(), "welcome".into()),
            ("SMS".into(), "otp".into())
        ]
    );
    let sms_only = templates
        .list_templates(pb::ListTemplatesRequest {
            project_id: project.clone(),
            template_type: "SMS".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sms_only.templates.len(), 1);
    let versions = templates
        .list_template_versions(pb::ListTemplateVersionsRequest {
            project_id: project.clone(),
            template_name: "welcome".into(),
            template_type: "EMAIL".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        versions
            .templates
            .iter()
            .map(|t| t.version)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );

    let deleted = templates
        .delete_email_template(pb::DeleteTemplateRequest {
            project_id: project.clone(),
            template_name: "welcome".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.versions_deleted, 1);
    // The active version was deleted: the latest remaining one becomes active.
    assert_eq!(
        subject(
            &templates
                .get_email_template(get(0))
                .await
                .unwrap()
                .into_inner()
        ),
        "Hi v2b"
    );
    templates
        .delete_email_template(pb::DeleteTemplateRequest {
            project_id: project.clone(),
            template_name: "welcome".into(),
            version: 0,
        })
        .await
        .unwrap();
    let gone = templates.get_email_template(get(0)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    node.shutdown().await.unwrap();
}

/// A template that does not parse is refused at save with the field and the position of the
/// error; nothing is stored; an unknown project is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_templates_are_refused_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.cluster.shards = 2;
    let node = RunningNode::start(config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", node.client_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let project = ProjectsClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            name: "t".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let mut templates = TemplatesClient::new(channel);
    let status = templates
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: fields(&project, "broken"),
            template: Some(pb::EmailTemplate {
                subject: "fine".into(),
                html_part: "<p>line one</p>\n<p>{{#if Attributes.plan}}unclosed</p>".into(),
                text_part: String::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().expect("field violations");
    let violation = bad
        .field_violations
        .iter()
        .find(|v| v.field.contains("html_part"))
        .expect("html_part named");
    assert!(
        violation.description.contains("line"),
        "{}",
        violation.description
    );
    let get = templates
        .get_email_template(pb::GetTemplateRequest {
            project_id: project.clone(),
            template_name: "broken".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);

    let unknown = templates
        .create_sms_template(pb::CreateSmsTemplateRequest {
            fields: fields("no-such-project", "x"),
            template: Some(pb::SmsTemplate { body: "hi".into() }),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    node.shutdown().await.unwrap();
}
