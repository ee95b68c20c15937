//! `herald send message|otp` and `herald verify-otp`: direct sends and one-time passwords.

use std::collections::HashMap;

use anyhow::{Context, bail};
use herald_proto::v1 as proto;
use herald_proto::v1::messages_client::MessagesClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::ConnectArgs;
use super::output::{Table, print_json, status_error};
use super::records::parse_name_value;

/// `herald send ...`
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: SendCommand,
}

/// The send commands.
#[derive(Debug, clap::Subcommand)]
pub enum SendCommand {
    /// Send a message to addresses or to every endpoint of users (up to 100 recipients).
    Message(SendMessageArgs),
    /// Send a one-time password to a phone number or email address.
    Otp(SendOtpArgs),
}

/// `herald send message`
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("recipients").required(true).args(["address", "user"])))]
pub struct SendMessageArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// An address (email, E.164 number, token); repeat for several. Needs --channel.
    #[arg(long, requires = "channel", conflicts_with = "user")]
    pub address: Vec<String>,
    /// Channel of the addresses: EMAIL, SMS, VOICE, APNS, GCM, CUSTOM.
    #[arg(long)]
    pub channel: Option<String>,
    /// A user id; its endpoints receive the message. Repeat for several.
    #[arg(long)]
    pub user: Vec<String>,
    /// Email subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Email HTML part.
    #[arg(long)]
    pub html: Option<String>,
    /// Email text part.
    #[arg(long)]
    pub text: Option<String>,
    /// Body of SMS, voice, push and in-app messages.
    #[arg(long)]
    pub body: Option<String>,
    /// Title of push messages and header of in-app messages.
    #[arg(long)]
    pub title: Option<String>,
    /// A stored template instead of inline content.
    #[arg(long, conflicts_with_all = ["subject", "html", "text", "body", "title"])]
    pub template: Option<String>,
    /// The template's version [default: the active one].
    #[arg(long, requires = "template")]
    pub template_version: Option<u32>,
    /// The template's type: EMAIL, SMS, PUSH, VOICE, INAPP [default: the channel's, or EMAIL
    /// for users].
    #[arg(long, requires = "template")]
    pub template_type: Option<String>,
    /// A substitution for every recipient, e.g. OrderId=42; repeat a name for a list.
    #[arg(long = "substitution", value_name = "NAME=VALUE", value_parser = parse_name_value)]
    pub substitutions: Vec<(String, String)>,
    /// The configured origination identity (number or sender id) SMS and voice go from;
    /// default: chosen by the short code, 10DLC, toll-free order.
    #[arg(long, value_name = "NUMBER")]
    pub origination: Option<String>,
}

/// `herald send otp`
#[derive(Debug, Clone, clap::Args)]
pub struct SendOtpArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// E.164 number (SMS, VOICE) or email address (EMAIL).
    #[arg(long)]
    pub destination: String,
    /// SMS, VOICE or EMAIL.
    #[arg(long, default_value = "SMS")]
    pub channel: String,
    /// Digits of the code, 4 to 8.
    #[arg(long, default_value_t = 6)]
    pub code_length: u32,
    /// Minutes the code stays valid, at most 60.
    #[arg(long, default_value_t = 15)]
    pub validity_minutes: u32,
    /// Verification attempts allowed.
    #[arg(long, default_value_t = 3)]
    pub allowed_attempts: u32,
    /// What the code protects; verification names it again.
    #[arg(long)]
    pub reference: String,
    /// Printed in the message: "Your BRAND code is 123456".
    #[arg(long, default_value = "")]
    pub brand: String,
}

/// `herald verify-otp`
#[derive(Debug, clap::Args)]
pub struct VerifyOtpArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The destination the code was sent to.
    #[arg(long)]
    pub destination: String,
    /// The reference given when sending.
    #[arg(long)]
    pub reference: String,
    /// The code the user typed.
    #[arg(long)]
    pub otp: String,
}

fn channel_type(name: &str) -> anyhow::Result<proto::ChannelType> {
    let channel = crate::domain::endpoint::ChannelType::parse(name)
        .with_context(|| format!("unknown channel {name:?}"))?;
    proto::ChannelType::from_str_name(&format!("CHANNEL_TYPE_{}", channel.as_str()))
        .with_context(|| format!("unknown channel {name:?}"))
}

fn substitutions(pairs: &[(String, String)]) -> HashMap<String, proto::AttributeValues> {
    let mut map: HashMap<String, proto::AttributeValues> = HashMap::new();
    for (name, value) in pairs {
        map.entry(name.clone())
            .or_default()
            .values
            .push(value.clone());
    }
    map
}

impl SendMessageArgs {
    /// Inline content from the flags: each flag fills every channel kind it applies to.
    fn message(&self) -> Option<proto::DirectMessageConfiguration> {
        if self.template.is_some() {
            return None;
        }
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let mut message = proto::DirectMessageConfiguration::default();
        if self.subject.is_some() || self.html.is_some() || self.text.is_some() {
            message.email = Some(proto::EmailTemplate {
                subject: text(&self.subject),
                html_part: text(&self.html),
                text_part: text(&self.text),
            });
        }
        if self.body.is_some() || self.title.is_some() {
            let body = text(&self.body);
            message.sms = Some(proto::SmsTemplate { body: body.clone() });
            message.voice = Some(proto::VoiceTemplate {
                body: body.clone(),
                ..Default::default()
            });
            message.push = Some(proto::PushTemplate {
                title: text(&self.title),
                body: body.clone(),
                ..Default::default()
            });
            message.in_app = Some(proto::InAppTemplate {
                header: text(&self.title),
                body,
                ..Default::default()
            });
        }
        Some(message)
    }

    /// The stored template named by the flags, under its type.
    fn templates(&self) -> anyhow::Result<Option<proto::TemplateConfiguration>> {
        let Some(name) = &self.template else {
            return Ok(None);
        };
        let kind = match (&self.template_type, &self.channel) {
            (Some(kind), _) => crate::domain::template::TemplateType::parse(kind)
                .with_context(|| format!("unknown template type {kind:?}"))?,
            (None, Some(channel)) => crate::domain::message::content_type_for(
                crate::domain::endpoint::ChannelType::parse(channel)
                    .with_context(|| format!("unknown channel {channel:?}"))?,
            ),
            (None, None) => crate::domain::template::TemplateType::Email,
        };
        let reference = Some(proto::TemplateReference {
            name: name.clone(),
            version: self.template_version.unwrap_or(0),
        });
        let mut templates = proto::TemplateConfiguration::default();
        use crate::domain::template::TemplateType;
        match kind {
            TemplateType::Email => templates.email = reference,
            TemplateType::Sms => templates.sms = reference,
            TemplateType::Push => templates.push = reference,
            TemplateType::Voice => templates.voice = reference,
            TemplateType::InApp => templates.in_app = reference,
        }
        Ok(Some(templates))
    }
}

fn status_name(result: &proto::MessageResult) -> String {
    result
        .delivery_status()
        .as_str_name()
        .trim_start_matches("DELIVERY_STATUS_")
        .to_string()
}

fn result_json(result: &proto::MessageResult) -> Value {
    json!({
        "delivery_status": status_name(result),
        "message_id": result.message_id,
        "status_code": result.status_code,
        "status_message": result.status_message,
    })
}

/// Rows of recipient, endpoint and result, sorted for stable output.
fn print_results(rows: Vec<(String, String, proto::MessageResult)>, json: bool) {
    let mut rows = rows;
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    if json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(recipient, endpoint, result)| {
                let mut item = result_json(result);
                item["recipient"] = json!(recipient);
                if !endpoint.is_empty() {
                    item["endpoint_id"] = json!(endpoint);
                }
                item
            })
            .collect();
        print_json(&json!({ "results": items }));
        return;
    }
    let mut table = Table::new(&[
        "RECIPIENT",
        "ENDPOINT",
        "STATUS",
        "CODE",
        "MESSAGE ID",
        "DETAIL",
    ]);
    for (recipient, endpoint, result) in rows {
        table.push(vec![
            recipient,
            endpoint,
            status_name(&result),
            result.status_code.to_string(),
            result.message_id.clone(),
            result.status_message.clone(),
        ]);
    }
    print!("{}", table.render());
}

/// Runs a send command.
pub async fn run(channel: Channel, command: SendCommand, json: bool) -> anyhow::Result<()> {
    let mut client = MessagesClient::new(channel);
    match command {
        SendCommand::Message(args) => {
            let message = args.message();
            let templates = args.templates()?;
            let request_substitutions = substitutions(&args.substitutions);
            let rows = if args.address.is_empty() {
                let response = client
                    .send_users_messages(proto::SendUsersMessagesRequest {
                        project_id: args.project.clone(),
                        users: args
                            .user
                            .iter()
                            .map(|user| (user.clone(), proto::EndpointSendConfiguration::default()))
                            .collect(),
                        message,
                        templates,
                        substitutions: request_substitutions,
                        origination_number: args.origination.clone().unwrap_or_default(),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let mut rows = Vec::new();
                for (user, endpoints) in response.results {
                    if endpoints.endpoints.is_empty() {
                        eprintln!("user {user:?} has no endpoints");
                    }
                    for (endpoint, result) in endpoints.endpoints {
                        rows.push((user.clone(), endpoint, result));
                    }
                }
                rows
            } else {
                let Some(channel) = &args.channel else {
                    bail!("--address needs --channel");
                };
                let channel = channel_type(channel)?;
                let response = client
                    .send_messages(proto::SendMessagesRequest {
                        project_id: args.project.clone(),
                        addresses: args
                            .address
                            .iter()
                            .map(|address| {
                                (
                                    address.clone(),
                                    proto::AddressConfiguration {
                                        channel_type: channel.into(),
                                        substitutions: HashMap::new(),
                                    },
                                )
                            })
                            .collect(),
                        message,
                        templates,
                        substitutions: request_substitutions,
                        origination_number: args.origination.clone().unwrap_or_default(),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                response
                    .results
                    .into_iter()
                    .map(|(address, result)| (address, String::new(), result))
                    .collect()
            };
            print_results(rows, json);
        }
        SendCommand::Otp(args) => {
            let response = client
                .send_otp_message(proto::SendOtpMessageRequest {
                    project_id: args.project,
                    destination: args.destination.clone(),
                    channel: channel_type(&args.channel)?.into(),
                    code_length: args.code_length,
                    validity_minutes: args.validity_minutes,
                    allowed_attempts: args.allowed_attempts,
                    reference_id: args.reference,
                    brand_name: args.brand,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let result = response.result.unwrap_or_default();
            print_results(vec![(args.destination, String::new(), result)], json);
        }
    }
    Ok(())
}

/// Runs `herald verify-otp`: prints whether the code is valid.
pub async fn verify(channel: Channel, args: VerifyOtpArgs) -> anyhow::Result<()> {
    let valid = MessagesClient::new(channel)
        .verify_otp_message(proto::VerifyOtpMessageRequest {
            project_id: args.project,
            destination: args.destination,
            reference_id: args.reference,
            otp: args.otp,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .valid;
    if args.connect.json {
        print_json(&json!({ "valid": valid }));
    } else {
        println!("{}", if valid { "valid" } else { "invalid" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: SendCommand,
    }

    fn parse(arguments: &[&str]) -> Result<SendCommand, clap::Error> {
        let mut all = vec!["send"];
        all.extend_from_slice(arguments);
        TestCli::try_parse_from(all).map(|cli| cli.command)
    }

    /// Inline flags fill every channel kind they apply to; substitutions repeat into lists;
    /// a recipient is required and addresses need a channel.
    #[test]
    fn message_flags_build_the_request() {
        let Ok(SendCommand::Message(args)) = parse(&[
            "message",
            "--project",
            "p",
            "--user",
            "u1",
            "--body",
            "hi",
            "--substitution",
            "k=a",
            "--substitution",
            "k=b",
        ]) else {
            panic!("not a message command");
        };
        let message = args.message().unwrap();
        assert_eq!(message.sms.unwrap().body, "hi");
        assert_eq!(message.in_app.unwrap().body, "hi");
        assert!(message.email.is_none());
        assert_eq!(substitutions(&args.substitutions)["k"].values, ["a", "b"]);
        assert!(parse(&["message", "--project", "p", "--body", "x"]).is_err());
        assert!(
            parse(&[
                "message",
                "--project",
                "p",
                "--address",
                "a@b.c",
                "--body",
                "x"
            ])
            .is_err()
        );
        let Ok(SendCommand::Message(args)) = parse(&[
            "message",
            "--project",
            "p",
            "--address",
            "+14155550100",
            "--channel",
            "SMS",
            "--template",
            "t",
        ]) else {
            panic!("not a message command");
        };
        let templates = args.templates().unwrap().unwrap();
        assert_eq!(templates.sms.unwrap().name, "t");
        assert!(args.message().is_none());
    }
}
