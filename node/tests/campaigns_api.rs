//! Campaigns and campaign KPIs through a real in-process server: the life of a campaign over
//! the API (create, read, versions, update, list, delete), bad campaigns refused with
//! INVALID_ARGUMENT naming each bad field by its path in the request, and KPI requests
//! checked the same way. Sending is proved elsewhere; these campaigns start far in the future.

use std::collections::HashMap;

use herald_node::config::Config;
use herald_node::server::RunningNode;
use herald_proto::v1 as pb;
use herald_proto::v1::analytics_client::AnalyticsClient;
use herald_proto::v1::campaigns_client::CampaignsClient;
use herald_proto::v1::projects_client::ProjectsClient;
use herald_proto::v1::segments_client::SegmentsClient;
use herald_proto::v1::templates_client::TemplatesClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// A start no test reaches, so the scheduler leaves these campaigns alone.
const FAR_START: &str = "2099-01-01T09:00:00Z";

/// A node with a project, a segment of every endpoint and an email template.
struct Setup {
    _dir: tempfile::TempDir,
    node: RunningNode,
    channel: Channel,
    project: String,
    segment: String,
}

async fn start() -> Setup {
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
            name: "campaigns".into(),
            tags: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .project_id;
    let segment = SegmentsClient::new(channel.clone())
        .create_segment(pb::CreateSegmentRequest {
            project_id: project.clone(),
            segment: Some(pb::SegmentDefinition {
                name: "everyone".into(),
                rule: Some(pb::segment_definition::Rule::Dimensions(
                    pb::SegmentDimensions::default(),
                )),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .segment_id;
    TemplatesClient::new(channel.clone())
        .create_email_template(pb::CreateEmailTemplateRequest {
            fields: Some(pb::TemplateFields {
                project_id: project.clone(),
                template_name: "welcome".into(),
                ..Default::default()
            }),
            template: Some(pb::EmailTemplate {
                subject: "Welcome".into(),
                html_part: "<p>Hi {{User.UserAttributes.FirstName}}</p>".into(),
                text_part: String::new(),
            }),
        })
        .await
        .unwrap();
    Setup {
        _dir: dir,
        node,
        channel,
        project,
        segment,
    }
}

fn once_at(start_time: &str) -> Option<pb::Schedule> {
    Some(pb::Schedule {
        start_time: start_time.into(),
        frequency: "ONCE".into(),
        ..Default::default()
    })
}

fn welcome_template() -> Option<pb::TemplateConfiguration> {
    Some(pb::TemplateConfiguration {
        email: Some(pb::TemplateReference {
            name: "welcome".into(),
            version: 0,
        }),
        ..Default::default()
    })
}

/// A valid single-treatment campaign: the message at the top level.
fn simple_campaign(setup: &Setup, name: &str) -> pb::WriteCampaign {
    pb::WriteCampaign {
        name: name.into(),
        segment_id: setup.segment.clone(),
        template_configuration: welcome_template(),
        message: Some(pb::DirectMessageConfiguration {
            sms: Some(pb::SmsTemplate {
                body: "Hi {{User.UserAttributes.FirstName}}".into(),
            }),
            ..Default::default()
        }),
        schedule: once_at(FAR_START),
        limits: Some(pb::CampaignLimitOverrides {
            daily: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A treatment of `size` percent sending the welcome template.
fn treatment(size: u32) -> pb::Treatment {
    pb::Treatment {
        name: format!("{size}%"),
        size_percent: size,
        template_configuration: welcome_template(),
        ..Default::default()
    }
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    fields
}

/// The write a stored version came from, as `herald campaign update` builds it.
fn rewrite(campaign: &pb::Campaign) -> pb::WriteCampaign {
    pb::WriteCampaign {
        name: campaign.name.clone(),
        description: campaign.description.clone(),
        segment_id: campaign.segment_id.clone(),
        segment_version: campaign.segment_version,
        treatments: campaign.treatments.clone(),
        holdout_percent: campaign.holdout_percent,
        schedule: campaign.schedule.clone(),
        event_filter: campaign.event_filter.clone(),
        limits: campaign.limits,
        is_paused: campaign.is_paused,
        ..Default::default()
    }
}

/// CMP-1: a campaign is created as version 1 with its message as the single treatment, reads
/// back as written, gains a version per update while earlier versions stay readable, is
/// listed at its latest version, and is gone after delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_lifecycle() {
    let setup = start().await;
    let project = setup.project.clone();
    let mut campaigns = CampaignsClient::new(setup.channel.clone());

    let created = campaigns
        .create_campaign(pb::CreateCampaignRequest {
            project_id: project.clone(),
            campaign: Some(simple_campaign(&setup, "spring")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!created.campaign_id.is_empty());
    assert_eq!(created.version, 1);
    assert_eq!(created.state, "SCHEDULED");
    assert_eq!(created.treatments.len(), 1);
    let only = &created.treatments[0];
    assert_eq!(only.size_percent, 100);
    assert_eq!(only.template_configuration, welcome_template());
    assert!(only.message.as_ref().unwrap().sms.is_some());
    assert_eq!(created.limits.as_ref().unwrap().daily, Some(1));
    assert_eq!(created.limits.as_ref().unwrap().total, None);
    let schedule = created.schedule.clone().unwrap();
    assert_eq!(
        (schedule.start_time.as_str(), schedule.frequency.as_str()),
        (FAR_START, "ONCE")
    );
    let id = created.campaign_id.clone();

    let read = campaigns
        .get_campaign(pb::GetCampaignRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, created);

    let versions = campaigns
        .get_campaign_versions(pb::GetCampaignVersionsRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert_eq!(versions.len(), 1);

    let mut next = rewrite(&read);
    next.name = "spring, held out".into();
    next.holdout_percent = 10;
    next.treatments[0].size_percent = 90;
    let updated = campaigns
        .update_campaign(pb::UpdateCampaignRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
            campaign: Some(next),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.campaign_id.as_str(), updated.version),
        (id.as_str(), 2)
    );
    assert_eq!(updated.holdout_percent, 10);
    assert_eq!(updated.creation_date, created.creation_date);

    let versions = campaigns
        .get_campaign_versions(pb::GetCampaignVersionsRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    let names: Vec<(u32, &str)> = versions
        .iter()
        .map(|campaign| (campaign.version, campaign.name.as_str()))
        .collect();
    assert_eq!(names, [(1, "spring"), (2, "spring, held out")]);
    let first = campaigns
        .get_campaign(pb::GetCampaignRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.name.as_str(), first.holdout_percent), ("spring", 0));

    let listed = campaigns
        .get_campaigns(pb::GetCampaignsRequest {
            project_id: project.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].campaign_id.as_str(), listed[0].version),
        (id.as_str(), 2)
    );

    let activities = campaigns
        .get_campaign_activities(pb::GetCampaignActivitiesRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .activities;
    assert!(activities.is_empty(), "{activities:?}");

    let deleted = campaigns
        .delete_campaign(pb::DeleteCampaignRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.campaign_id, id);
    let error = campaigns
        .get_campaign(pb::GetCampaignRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = campaigns
        .update_campaign(pb::UpdateCampaignRequest {
            project_id: project.clone(),
            campaign_id: id.clone(),
            campaign: Some(simple_campaign(&setup, "back")),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");

    setup.node.shutdown().await.unwrap();
}

/// CMP-1, CMP-2, CMP-4: bad campaigns are refused with INVALID_ARGUMENT naming the bad field
/// by its path in the request, every problem of one request at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_campaigns_are_refused_naming_the_field() {
    let setup = start().await;
    let mut campaigns = CampaignsClient::new(setup.channel.clone());
    let mut refused = async |campaign: pb::WriteCampaign| {
        let error = campaigns
            .create_campaign(pb::CreateCampaignRequest {
                project_id: setup.project.clone(),
                campaign: Some(campaign),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        violated_fields(&error)
    };

    // Treatment sizes and the holdout must add up to 100.
    let mut sizes = simple_campaign(&setup, "sizes");
    sizes.message = None;
    sizes.template_configuration = None;
    sizes.holdout_percent = 5;
    sizes.treatments = vec![treatment(50), treatment(40)];
    assert_eq!(refused(sizes).await, ["campaign.treatments"]);

    // At most five treatments.
    let mut six = simple_campaign(&setup, "six");
    six.message = None;
    six.template_configuration = None;
    six.treatments = vec![
        treatment(20),
        treatment(20),
        treatment(20),
        treatment(20),
        treatment(10),
        treatment(10),
    ];
    assert_eq!(refused(six).await, ["campaign.treatments"]);

    // The segment must exist.
    let mut unknown_segment = simple_campaign(&setup, "unknown segment");
    unknown_segment.segment_id = "no-such-segment".into();
    assert_eq!(refused(unknown_segment).await, ["campaign.segment_id"]);

    // So must the templates, named where the request names them.
    let mut unknown_template = simple_campaign(&setup, "unknown template");
    unknown_template.template_configuration = Some(pb::TemplateConfiguration {
        push: Some(pb::TemplateReference {
            name: "no-such-template".into(),
            version: 0,
        }),
        ..Default::default()
    });
    assert_eq!(
        refused(unknown_template).await,
        ["campaign.treatments[0].template_configuration.push.name"]
    );

    // A recurring schedule needs an end.
    let mut no_end = simple_campaign(&setup, "no end");
    no_end.schedule = Some(pb::Schedule {
        start_time: FAR_START.into(),
        frequency: "DAILY".into(),
        ..Default::default()
    });
    assert_eq!(refused(no_end).await, ["campaign.schedule.end_time"]);

    // Names that cannot be read and a message given twice, in one answer.
    let mut unreadable = simple_campaign(&setup, "unreadable");
    unreadable.treatments = vec![treatment(100)];
    unreadable.schedule = Some(pb::Schedule {
        start_time: FAR_START.into(),
        frequency: "FORTNIGHTLY".into(),
        ..Default::default()
    });
    unreadable.event_filter = Some(pb::EventFilter {
        attributes: HashMap::from([(
            "plan".to_string(),
            pb::AttributeDimension {
                kind: "SOMETIMES".into(),
                values: vec!["pro".into()],
            },
        )]),
        ..Default::default()
    });
    assert_eq!(
        refused(unreadable).await,
        [
            "campaign.event_filter.attributes[\"plan\"].kind",
            "campaign.message",
            "campaign.schedule.frequency",
        ]
    );

    // Nothing was stored.
    let listed = campaigns
        .get_campaigns(pb::GetCampaignsRequest {
            project_id: setup.project.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert!(listed.is_empty(), "{listed:?}");

    setup.node.shutdown().await.unwrap();
}

/// ANL-3: a KPI request names a known KPI and a date range, or is refused naming the field;
/// a good one answers one row per day, zero before anything was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_requests_are_checked() {
    let setup = start().await;
    let campaign = CampaignsClient::new(setup.channel.clone())
        .create_campaign(pb::CreateCampaignRequest {
            project_id: setup.project.clone(),
            campaign: Some(simple_campaign(&setup, "kpi")),
        })
        .await
        .unwrap()
        .into_inner();
    let mut analytics = AnalyticsClient::new(setup.channel.clone());
    let request =
        |kpi_name: &str, start_date: &str, end_date: &str| pb::GetCampaignDateRangeKpiRequest {
            project_id: setup.project.clone(),
            campaign_id: campaign.campaign_id.clone(),
            kpi_name: kpi_name.into(),
            start_date: start_date.into(),
            end_date: end_date.into(),
            by_treatment: false,
        };

    let error = analytics
        .get_campaign_date_range_kpi(request("open-happiness", "2026-04-01", "2026-04-03"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(violated_fields(&error), ["kpi_name"]);
    assert!(
        error.message().contains("\"open-happiness\""),
        "{}",
        error.message()
    );

    let error = analytics
        .get_campaign_date_range_kpi(request("email-clicks", "April 1st", "2026-03-01"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(violated_fields(&error), ["start_date"]);
    let error = analytics
        .get_campaign_date_range_kpi(request("email-clicks", "2026-04-03", "2026-04-01"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&error), ["end_date"]);

    let answer = analytics
        .get_campaign_date_range_kpi(request("attempted-deliveries", "2026-04-01", "2026-04-03"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.kpi_name, "attempted-deliveries");
    let rows: Vec<(&str, Option<u32>, f64)> = answer
        .rows
        .iter()
        .map(|row| (row.date.as_str(), row.treatment_id, row.value))
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-04-01", None, 0.0),
            ("2026-04-02", None, 0.0),
            ("2026-04-03", None, 0.0),
        ]
    );

    let error = analytics
        .get_campaign_date_range_kpi(pb::GetCampaignDateRangeKpiRequest {
            campaign_id: "no-such-campaign".into(),
            ..request("email-clicks", "2026-04-01", "2026-04-01")
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");

    setup.node.shutdown().await.unwrap();
}
