//! `herald project ...`: create, read, list, configure and delete projects.

use herald_proto::v1 as proto;
use herald_proto::v1::projects_client::ProjectsClient;
use tonic::transport::Channel;

use super::output::{self, print_json, project_json, project_table, projects_table, status_error};
use super::{ProjectCommand, ProjectSettingsArgs};

/// Projects asked for per `ListProjects` page (the server's maximum).
const PROJECTS_PER_PAGE: u32 = 1000;

/// Parses a quiet-time clock time `HH:MM` (normalized to two digits); empty clears it.
pub fn parse_clock_time(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    match chrono::NaiveTime::parse_from_str(text, "%H:%M") {
        Ok(time) => Ok(time.format("%H:%M").to_string()),
        Err(_) => Err(format!("{text:?} is not a clock time HH:MM (e.g. 22:00)")),
    }
}

/// Parses a campaign hook mode, `FILTER` or `DELIVERY` (any case); empty clears it.
pub fn parse_hook_mode(text: &str) -> Result<String, String> {
    let mode = text.trim().to_ascii_uppercase();
    match mode.as_str() {
        "" | "FILTER" | "DELIVERY" => Ok(mode),
        _ => Err(format!(
            "unknown hook mode {text:?} (expected FILTER or DELIVERY)"
        )),
    }
}

/// Whether the settings command was given anything to change.
fn has_changes(arguments: &ProjectSettingsArgs) -> bool {
    [
        arguments.daily,
        arguments.total,
        arguments.messages_per_second,
        arguments.maximum_duration,
        arguments.session,
    ]
    .iter()
    .any(Option::is_some)
        || arguments.quiet_start.is_some()
        || arguments.quiet_end.is_some()
        || arguments.hook_url.is_some()
        || arguments.hook_mode.is_some()
}

/// The settings to write: `current` with the given flags applied, the rest untouched.
pub fn changed_settings(
    current: proto::ProjectSettings,
    arguments: &ProjectSettingsArgs,
) -> proto::ProjectSettings {
    let mut limits = current.limits.unwrap_or_default();
    let mut quiet_time = current.quiet_time.unwrap_or_default();
    let mut hook = current.campaign_hook.unwrap_or_default();
    let limit_changes = [
        (&mut limits.daily, arguments.daily),
        (&mut limits.total, arguments.total),
        (
            &mut limits.messages_per_second,
            arguments.messages_per_second,
        ),
        (&mut limits.maximum_duration, arguments.maximum_duration),
        (&mut limits.session, arguments.session),
    ];
    for (limit, change) in limit_changes {
        if let Some(value) = change {
            *limit = value;
        }
    }
    let text_changes = [
        (&mut quiet_time.start, &arguments.quiet_start),
        (&mut quiet_time.end, &arguments.quiet_end),
        (&mut hook.web_url, &arguments.hook_url),
        (&mut hook.mode, &arguments.hook_mode),
    ];
    for (field, change) in text_changes {
        if let Some(value) = change {
            field.clone_from(value);
        }
    }
    proto::ProjectSettings {
        limits: Some(limits),
        quiet_time: Some(quiet_time),
        campaign_hook: Some(hook),
        // Set by the server.
        last_modified_date: String::new(),
    }
}

fn print_project(project: &proto::Project, json: bool) {
    if json {
        print_json(&project_json(project));
    } else {
        print!("{}", project_table(project).render());
    }
}

/// Runs one `herald project` command.
pub async fn run(channel: Channel, command: ProjectCommand, json: bool) -> anyhow::Result<()> {
    let mut client = ProjectsClient::new(channel);
    match command {
        ProjectCommand::Create { name, tags } => {
            let request = proto::CreateProjectRequest {
                name,
                tags: tags.into_iter().collect(),
            };
            let project = client.create_project(request).await.map_err(status_error)?;
            print_project(project.get_ref(), json);
        }
        ProjectCommand::Get { project_id } => {
            let project = client
                .get_project(proto::GetProjectRequest { project_id })
                .await
                .map_err(status_error)?;
            print_project(project.get_ref(), json);
        }
        ProjectCommand::List => {
            let projects = list_all_projects(&mut client).await?;
            if json {
                let projects: Vec<_> = projects.iter().map(project_json).collect();
                print_json(&serde_json::json!({ "projects": projects }));
            } else {
                print!("{}", projects_table(&projects).render());
            }
        }
        ProjectCommand::Delete { project_id } => {
            let project = client
                .delete_project(proto::DeleteProjectRequest { project_id })
                .await
                .map_err(status_error)?;
            print_project(project.get_ref(), json);
        }
        ProjectCommand::Settings(arguments) => {
            if !has_changes(&arguments) {
                anyhow::bail!(
                    "no setting given: pass at least one of --daily, --total, \
                     --messages-per-second, --maximum-duration, --session, --quiet-start, \
                     --quiet-end, --hook-url, --hook-mode"
                );
            }
            let project_id = arguments.project_id.clone();
            let current = client
                .get_project(proto::GetProjectRequest {
                    project_id: project_id.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let settings = changed_settings(current.settings.unwrap_or_default(), &arguments);
            let project = client
                .update_project_settings(proto::UpdateProjectSettingsRequest {
                    project_id,
                    settings: Some(settings),
                })
                .await
                .map_err(status_error)?;
            print_project(project.get_ref(), json);
        }
    }
    Ok(())
}

/// Every project, following the pages.
async fn list_all_projects(
    client: &mut ProjectsClient<Channel>,
) -> anyhow::Result<Vec<proto::Project>> {
    let mut projects = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_projects(proto::ListProjectsRequest {
                page_size: PROJECTS_PER_PAGE,
                page_token: page_token.clone(),
            })
            .await
            .map_err(output::status_error)?
            .into_inner();
        projects.extend(page.projects);
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            return Ok(projects);
        }
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments() -> ProjectSettingsArgs {
        ProjectSettingsArgs {
            project_id: "p1".to_string(),
            daily: None,
            total: None,
            messages_per_second: None,
            maximum_duration: None,
            session: None,
            quiet_start: None,
            quiet_end: None,
            hook_url: None,
            hook_mode: None,
        }
    }

    /// Only the given flags change; every other setting keeps its current value.
    #[test]
    fn settings_change_only_given_fields() {
        let current = proto::ProjectSettings {
            limits: Some(proto::CampaignLimits {
                daily: 5,
                total: 10,
                messages_per_second: 100,
                maximum_duration: 60,
                session: 2,
            }),
            quiet_time: Some(proto::QuietTime {
                start: "22:00".to_string(),
                end: "07:00".to_string(),
            }),
            campaign_hook: Some(proto::CampaignHook {
                web_url: "https://hook.example".to_string(),
                mode: "FILTER".to_string(),
            }),
            last_modified_date: "2026-01-01T00:00:00Z".to_string(),
        };
        let mut changes = arguments();
        changes.daily = Some(7);
        changes.quiet_end = Some("06:30".to_string());
        let settings = changed_settings(current, &changes);
        let limits = settings.limits.expect("limits");
        assert_eq!((limits.daily, limits.total, limits.session), (7, 10, 2));
        let quiet_time = settings.quiet_time.expect("quiet time");
        assert_eq!(
            (quiet_time.start.as_str(), quiet_time.end.as_str()),
            ("22:00", "06:30")
        );
        assert_eq!(settings.campaign_hook.expect("hook").mode, "FILTER");
        assert!(has_changes(&changes));
        assert!(!has_changes(&arguments()));
    }

    /// Clock times must be HH:MM; empty clears the quiet time.
    #[test]
    fn clock_times_are_checked() {
        assert_eq!(parse_clock_time("9:05"), Ok("09:05".to_string()));
        assert_eq!(parse_clock_time(""), Ok(String::new()));
        let error = parse_clock_time("25:00").expect_err("bad hour");
        assert!(error.contains("\"25:00\""), "{error}");
        assert_eq!(parse_hook_mode("delivery"), Ok("DELIVERY".to_string()));
        assert!(parse_hook_mode("both").is_err());
    }
}
