//! `herald.v1.Messages`: direct sends to addresses and users, and one-time passwords.

use std::collections::BTreeMap;

use herald_proto::v1 as pb;
use herald_proto::v1::messages_server::Messages;
use tonic::{Request, Response, Status};

use super::convert::channel_from_proto;
use super::status::{invalid_argument, to_status};
use super::templates::{email_from, in_app_from, push_from, sms_from, voice_from};
use super::{ClusterHandle, check_ids, observed};
use crate::channels::DeliveryStatus;
use crate::cluster::messages::{AddressRecipient, SendContent, SendResult, status_code};
use crate::domain::FieldViolation;
use crate::domain::endpoint::{validate_address, validate_id};
use crate::domain::limits::Limits;
use crate::domain::message::MAX_RECIPIENTS;
use crate::domain::otp::validate_otp_spec;
use crate::domain::template::{self, TemplateType};

/// The Messages service over a cluster.
pub struct MessagesApi {
    cluster: ClusterHandle,
}

impl MessagesApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

fn substitutions_from(
    map: std::collections::HashMap<String, pb::AttributeValues>,
) -> BTreeMap<String, Vec<String>> {
    map.into_iter()
        .map(|(name, values)| (name, values.values))
        .collect()
}

/// The request's content, validated: every bad part named under `message` or `templates`.
fn send_content(
    message: Option<pb::DirectMessageConfiguration>,
    templates: Option<pb::TemplateConfiguration>,
    substitutions: std::collections::HashMap<String, pb::AttributeValues>,
    violations: &mut Vec<FieldViolation>,
) -> SendContent {
    let mut content = SendContent {
        substitutions: substitutions_from(substitutions),
        ..SendContent::default()
    };
    let message = message.unwrap_or_default();
    let inline = [
        message.email.map(email_from),
        message.sms.map(sms_from),
        message.push.map(push_from),
        message.voice.map(voice_from),
        message.in_app.map(in_app_from),
    ];
    for part in inline.into_iter().flatten() {
        violations.extend(template::validate_template(
            "message",
            &part,
            &BTreeMap::new(),
        ));
        content.inline.insert(part.template_type(), part);
    }
    let templates = templates.unwrap_or_default();
    let references = [
        (TemplateType::Email, "email", templates.email),
        (TemplateType::Sms, "sms", templates.sms),
        (TemplateType::Push, "push", templates.push),
        (TemplateType::Voice, "voice", templates.voice),
        (TemplateType::InApp, "in_app", templates.in_app),
    ];
    for (kind, field, reference) in references {
        let Some(reference) = reference else {
            continue;
        };
        violations.extend(template::validate_name(
            &format!("templates.{field}.name"),
            &reference.name,
        ));
        let version = (reference.version != 0).then_some(reference.version);
        content.templates.insert(kind, (reference.name, version));
    }
    if content.inline.is_empty() && content.templates.is_empty() {
        violations.push(FieldViolation::new(
            "message",
            "needs inline content or a template for at least one channel",
        ));
    }
    content
}

fn check_recipients(field: &str, count: usize) -> Result<(), Status> {
    if count > MAX_RECIPIENTS {
        return Err(invalid_argument(&[FieldViolation::new(
            field,
            format!("has {count} recipients, more than the limit of {MAX_RECIPIENTS}"),
        )]));
    }
    Ok(())
}

fn delivery_status_to_proto(status: DeliveryStatus) -> pb::DeliveryStatus {
    match status {
        DeliveryStatus::Successful => pb::DeliveryStatus::Successful,
        DeliveryStatus::Throttled => pb::DeliveryStatus::Throttled,
        DeliveryStatus::TemporaryFailure => pb::DeliveryStatus::TemporaryFailure,
        DeliveryStatus::PermanentFailure => pb::DeliveryStatus::PermanentFailure,
        DeliveryStatus::OptOut => pb::DeliveryStatus::OptOut,
        DeliveryStatus::Duplicate => pb::DeliveryStatus::Duplicate,
        DeliveryStatus::QuietTime => pb::DeliveryStatus::QuietTime,
        DeliveryStatus::Capped => pb::DeliveryStatus::Capped,
        DeliveryStatus::UnknownFailure => pb::DeliveryStatus::UnknownFailure,
    }
}

fn result_to_proto(result: SendResult) -> pb::MessageResult {
    pb::MessageResult {
        delivery_status: delivery_status_to_proto(result.status).into(),
        message_id: result.message_id,
        status_code: result.status_code,
        status_message: result.status_message,
    }
}

/// The result of an address refused before sending: nothing was attempted.
fn refused(violations: &[FieldViolation]) -> pb::MessageResult {
    pb::MessageResult {
        delivery_status: pb::DeliveryStatus::PermanentFailure.into(),
        message_id: String::new(),
        status_code: status_code(DeliveryStatus::PermanentFailure),
        status_message: violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// An address and its configuration, or why it cannot be sent to.
fn address_recipient(
    address: &str,
    configuration: pb::AddressConfiguration,
    limits: &Limits,
) -> Result<AddressRecipient, Vec<FieldViolation>> {
    let field = format!("addresses[{address:?}]");
    let mut violations = Vec::new();
    let channel = channel_from_proto(
        configuration.channel_type,
        &format!("{field}.channel_type"),
        &mut violations,
    );
    let Some(channel) = channel else {
        if violations.is_empty() {
            violations.push(FieldViolation::new(
                format!("{field}.channel_type"),
                "is required",
            ));
        }
        return Err(violations);
    };
    validate_address(&field, channel, address, limits, &mut violations);
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(AddressRecipient {
        address: address.to_string(),
        channel,
        substitutions: substitutions_from(configuration.substitutions),
    })
}

#[tonic::async_trait]
impl Messages for MessagesApi {
    async fn send_messages(
        &self,
        request: Request<pb::SendMessagesRequest>,
    ) -> Result<Response<pb::SendMessagesResponse>, Status> {
        observed("SendMessages", async {
            let request = request.into_inner();
            let cluster = self.cluster.get()?;
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            check_recipients("addresses", request.addresses.len())?;
            let mut violations = Vec::new();
            let mut content = send_content(
                request.message,
                request.templates,
                request.substitutions,
                &mut violations,
            );
            content.origination_number = request.origination_number.trim().to_string();
            if !violations.is_empty() {
                return Err(invalid_argument(&violations));
            }
            let mut results = std::collections::HashMap::new();
            let mut recipients = Vec::new();
            for (address, configuration) in request.addresses {
                match address_recipient(&address, configuration, cluster.limits()) {
                    Ok(recipient) => recipients.push(recipient),
                    Err(violations) => {
                        results.insert(address, refused(&violations));
                    }
                }
            }
            let sent = cluster
                .send_to_addresses(&request.project_id, &content, &recipients)
                .await
                .map_err(to_status)?;
            for (recipient, result) in recipients.into_iter().zip(sent) {
                results.insert(recipient.address, result_to_proto(result));
            }
            Ok(pb::SendMessagesResponse { results })
        })
        .await
    }

    async fn send_users_messages(
        &self,
        request: Request<pb::SendUsersMessagesRequest>,
    ) -> Result<Response<pb::SendUsersMessagesResponse>, Status> {
        observed("SendUsersMessages", async {
            let request = request.into_inner();
            let cluster = self.cluster.get()?;
            let limits = cluster.limits();
            check_ids(&[("project_id", &request.project_id)], limits)?;
            check_recipients("users", request.users.len())?;
            let mut violations = Vec::new();
            for user_id in request.users.keys() {
                validate_id(
                    &format!("users[{user_id:?}]"),
                    user_id,
                    limits,
                    &mut violations,
                );
            }
            let mut content = send_content(
                request.message,
                request.templates,
                request.substitutions,
                &mut violations,
            );
            content.origination_number = request.origination_number.trim().to_string();
            if !violations.is_empty() {
                return Err(invalid_argument(&violations));
            }
            let users: Vec<(String, BTreeMap<String, Vec<String>>)> = request
                .users
                .into_iter()
                .map(|(user_id, configuration)| {
                    (user_id, substitutions_from(configuration.substitutions))
                })
                .collect();
            let sent = cluster
                .send_to_users(&request.project_id, &content, &users)
                .await
                .map_err(to_status)?;
            let results = users
                .into_iter()
                .zip(sent)
                .map(|((user_id, _), endpoints)| {
                    let endpoints = endpoints
                        .into_iter()
                        .map(|(endpoint_id, result)| (endpoint_id, result_to_proto(result)))
                        .collect();
                    (user_id, pb::EndpointMessageResults { endpoints })
                })
                .collect();
            Ok(pb::SendUsersMessagesResponse { results })
        })
        .await
    }

    async fn send_otp_message(
        &self,
        request: Request<pb::SendOtpMessageRequest>,
    ) -> Result<Response<pb::SendOtpMessageResponse>, Status> {
        observed("SendOTPMessage", async {
            let request = request.into_inner();
            let cluster = self.cluster.get()?;
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let mut violations = Vec::new();
            let channel = channel_from_proto(request.channel, "channel", &mut violations);
            if !violations.is_empty() {
                return Err(invalid_argument(&violations));
            }
            let spec = validate_otp_spec(
                &request.destination,
                channel,
                request.code_length,
                request.validity_minutes,
                request.allowed_attempts,
                &request.reference_id,
                &request.brand_name,
            )
            .map_err(|violations| invalid_argument(&violations))?;
            let result = cluster
                .send_otp(&request.project_id, &spec)
                .await
                .map_err(to_status)?;
            Ok(pb::SendOtpMessageResponse {
                result: Some(result_to_proto(result)),
            })
        })
        .await
    }

    async fn verify_otp_message(
        &self,
        request: Request<pb::VerifyOtpMessageRequest>,
    ) -> Result<Response<pb::VerifyOtpMessageResponse>, Status> {
        observed("VerifyOTPMessage", async {
            let request = request.into_inner();
            let cluster = self.cluster.get()?;
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let valid = cluster
                .verify_otp(
                    &request.project_id,
                    &request.destination,
                    &request.reference_id,
                    &request.otp,
                )
                .await
                .map_err(to_status)?;
            Ok(pb::VerifyOtpMessageResponse { valid })
        })
        .await
    }
}
