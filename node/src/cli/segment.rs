//! `herald segment ...`: define, version, read, list, delete and estimate dynamic segments.
//!
//! A segment file is the JSON form of Herald's segment definition (see [`SEGMENT_FILE_HELP`]);
//! the command converts it to the request with the API's own conversion, so the file and
//! the API cannot drift apart.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::segments_client::SegmentsClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::ConnectArgs;
use super::output::{Table, print_json, status_error};
use crate::api::segments::{definition_from_response, definition_to_proto};
use crate::domain::segment::SegmentDefinition;

/// What a segment file looks like, shown in `herald segment create --help`.
pub const SEGMENT_FILE_HELP: &str = r#"SEGMENT FILE (JSON; "-" reads standard input)

A segment is a name and a rule: "Dimensions" (one set of conditions, all of which must
hold), "Groups" (sets of conditions and other segments combined) or "Imported" (the
endpoints an import job imported: {"Imported": {"import_job_id": "JOB"}}; an import job
created with a segment name defines one too). Operators are
written Inclusive, Exclusive, Contains, Before, After, On, Between (attributes and value
lists), GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual, Equal, Between
(metrics), Hr24, Day7, Day14, Day30 with Active or Inactive (recency), All, Any, None
(groups). "demographic", "location", "attributes", "metrics" and "user_attributes" must be
present (empty is fine); every other condition may be left out.

Android or iOS users in Brazil seen in the last 7 days, on the pro plan, signed up in 2026,
with more than 3 visits, within 50 km of Recife:

  {
    "name": "engaged pro users in Brazil",
    "rule": {"Dimensions": {
      "recency": {"duration": "Day7", "kind": "Active"},
      "demographic": {"platform": {"kind": "Inclusive", "values": ["android", "ios"]}},
      "location": {
        "country": {"kind": "Inclusive", "values": ["BR"]},
        "gps_point": {"latitude": -8.05, "longitude": -34.9, "range_km": 50.0}
      },
      "attributes": {
        "plan": {"kind": "Inclusive", "values": ["pro"]},
        "signup": {"kind": "Between", "values": ["2026-01-01", "2026-12-31"]}
      },
      "metrics": {"visits": {"comparison": "GreaterThan", "value": 3.0}},
      "user_attributes": {}
    }}
  }

Members of segment S1 or S2 (latest versions) except those of S3 version 2:

  {
    "name": "S1 or S2, not S3",
    "rule": {"Groups": {"include": "All", "groups": [
      {"dimensions": [], "dimension_type": "All", "source_type": "Any",
       "segment_type": "Inclusive", "source_segments": [{"id": "S1"}, {"id": "S2"}]},
      {"dimensions": [], "dimension_type": "All", "source_type": "All",
       "segment_type": "Exclusive", "source_segments": [{"id": "S3", "version": 2}]}
    ]}}
  }"#;

/// `herald segment ...`
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: SegmentCommand,
}

/// The segment commands.
#[derive(Debug, clap::Subcommand)]
pub enum SegmentCommand {
    /// Create a segment from a JSON file and print it with its new id (version 1).
    #[command(after_long_help = SEGMENT_FILE_HELP)]
    Create {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The segment file (see --help).
        #[arg(long)]
        file: PathBuf,
    },
    /// Write the next version of a segment from a JSON file.
    #[command(after_long_help = SEGMENT_FILE_HELP)]
    Update {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The segment id.
        #[arg(long)]
        id: String,
        /// The segment file (see --help).
        #[arg(long)]
        file: PathBuf,
    },
    /// Print a segment (the latest version unless --version).
    Get(SegmentRefArgs),
    /// List a project's segments (their latest versions).
    List {
        /// The project id.
        #[arg(long)]
        project: String,
    },
    /// List every version of a segment.
    Versions {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The segment id.
        #[arg(long)]
        id: String,
    },
    /// Delete every version of a segment.
    Delete {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The segment id.
        #[arg(long)]
        id: String,
    },
    /// Print how many endpoints the segment selects now.
    Estimate(SegmentRefArgs),
}

/// Names one segment and optionally a version.
#[derive(Debug, Clone, clap::Args)]
pub struct SegmentRefArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The segment id.
    #[arg(long)]
    pub id: String,
    /// A version number [default: the latest].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
}

/// Reads a segment file (`-` is standard input) as a definition.
pub fn read_segment_file(path: &Path) -> anyhow::Result<SegmentDefinition> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the segment from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read segment file {}", path.display()))?
    };
    parse_segment(&text).with_context(|| format!("invalid segment file {}", path.display()))
}

/// Parses the JSON form of a segment definition.
pub fn parse_segment(text: &str) -> anyhow::Result<SegmentDefinition> {
    serde_json::from_str(text)
        .context("not a segment definition (see `herald segment create --help`)")
}

/// Runs a segment command.
pub async fn run(channel: Channel, command: SegmentCommand, json: bool) -> anyhow::Result<()> {
    let mut client = SegmentsClient::new(channel);
    match command {
        SegmentCommand::Create { project, file } => {
            let definition = read_segment_file(&file)?;
            let answer = client
                .create_segment(proto::CreateSegmentRequest {
                    project_id: project,
                    segment: Some(definition_to_proto(&definition)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer, json)?;
        }
        SegmentCommand::Update { project, id, file } => {
            let definition = read_segment_file(&file)?;
            let answer = client
                .update_segment(proto::UpdateSegmentRequest {
                    project_id: project,
                    segment_id: id,
                    segment: Some(definition_to_proto(&definition)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer, json)?;
        }
        SegmentCommand::Get(args) => {
            let answer = client
                .get_segment(proto::GetSegmentRequest {
                    project_id: args.project,
                    segment_id: args.id,
                    version: args.version.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer, json)?;
        }
        SegmentCommand::List { project } => {
            let list = client
                .get_segments(proto::GetSegmentsRequest {
                    project_id: project,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show_list(&list.segments, json)?;
        }
        SegmentCommand::Versions { project, id } => {
            let list = client
                .get_segment_versions(proto::GetSegmentVersionsRequest {
                    project_id: project,
                    segment_id: id,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show_list(&list.segments, json)?;
        }
        SegmentCommand::Delete { project, id } => {
            let deleted = client
                .delete_segment(proto::DeleteSegmentRequest {
                    project_id: project,
                    segment_id: id,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&segment_json(&deleted)?);
            } else {
                println!(
                    "deleted segment {} ({:?}, {} version(s))",
                    deleted.segment_id, deleted.name, deleted.version
                );
            }
        }
        SegmentCommand::Estimate(args) => {
            let estimate = client
                .estimate_segment_size(proto::EstimateSegmentSizeRequest {
                    project_id: args.project,
                    segment_id: args.id,
                    version: args.version.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&json!({
                    "segment_id": estimate.segment_id,
                    "version": estimate.version,
                    "endpoints": estimate.endpoints,
                }));
            } else {
                println!("{}", estimate.endpoints);
            }
        }
    }
    Ok(())
}

/// The definition a segment answer carries, in the JSON form of segment files.
fn definition_json(segment: &proto::SegmentResponse) -> anyhow::Result<Value> {
    let definition = definition_from_response(segment).map_err(|violations| {
        let reasons: Vec<String> = violations.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the server answered segment {} in a form this client cannot read: {}",
            segment.segment_id,
            reasons.join("; ")
        )
    })?;
    Ok(serde_json::to_value(definition)?)
}

/// A segment as JSON; its `definition` can be saved as a segment file for `update`.
pub fn segment_json(segment: &proto::SegmentResponse) -> anyhow::Result<Value> {
    Ok(json!({
        "project_id": segment.project_id,
        "segment_id": segment.segment_id,
        "version": segment.version,
        "creation_date": segment.creation_date,
        "last_modified_date": segment.last_modified_date,
        "definition": definition_json(segment)?,
    }))
}

/// "dimensions", "N groups (ALL)" or "imported by job J": what kind of rule a segment has.
fn rule_summary(segment: &proto::SegmentResponse) -> String {
    match &segment.rule {
        Some(proto::segment_response::Rule::Dimensions(_)) => "dimensions".to_string(),
        Some(proto::segment_response::Rule::SegmentGroups(list)) => {
            format!("{} group(s), {}", list.groups.len(), list.include)
        }
        Some(proto::segment_response::Rule::Imported(imported)) => {
            format!("imported by job {}", imported.import_job_id)
        }
        None => String::new(),
    }
}

fn show(segment: &proto::SegmentResponse, json: bool) -> anyhow::Result<()> {
    let value = segment_json(segment)?;
    if json {
        print_json(&value);
        return Ok(());
    }
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for (name, text) in [
        ("segment_id", segment.segment_id.clone()),
        ("name", segment.name.clone()),
        ("version", segment.version.to_string()),
        ("creation_date", segment.creation_date.clone()),
        ("last_modified_date", segment.last_modified_date.clone()),
        ("rule", value["definition"]["rule"].to_string()),
    ] {
        table.push(vec![name.to_string(), text]);
    }
    print!("{}", table.render());
    Ok(())
}

fn show_list(segments: &[proto::SegmentResponse], json: bool) -> anyhow::Result<()> {
    if json {
        let values = segments
            .iter()
            .map(segment_json)
            .collect::<anyhow::Result<Vec<_>>>()?;
        print_json(&Value::Array(values));
        return Ok(());
    }
    let mut table = Table::new(&["ID", "NAME", "VERSION", "RULE", "MODIFIED"]);
    for segment in segments {
        table.push(vec![
            segment.segment_id.clone(),
            segment.name.clone(),
            segment.version.to_string(),
            rule_summary(segment),
            segment.last_modified_date.clone(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
