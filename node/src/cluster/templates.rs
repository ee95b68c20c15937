//! Message templates (SPEC TPL): versions in the meta group, read linearizably.

use super::{Cluster, ClusterError, Result, now_rfc3339};
use crate::domain::template::{Template, TemplateType};
use crate::raft::META_GROUP;
use crate::raft::command::{
    MetaCommand, MetaResponse, TemplateCommand, TemplateHead, TemplateWrite,
};
use crate::raft::state_machine::{template_head_key, template_key};
use crate::storage::{codec, keys, keys::tag};

fn not_found(template_type: TemplateType, name: &str) -> ClusterError {
    ClusterError::NotFound(format!(
        "{} template {name:?} not found",
        template_type.as_str()
    ))
}

impl Cluster {
    fn template_answer(answer: MetaResponse, project_id: &str) -> Result<(Template, TemplateHead)> {
        match answer {
            MetaResponse::Template { template, head } => Ok((template, head)),
            MetaResponse::TemplateNotFound(message) => Err(ClusterError::NotFound(message)),
            MetaResponse::TemplateExists => Err(ClusterError::AlreadyExists(
                "a template of that name and type exists".into(),
            )),
            MetaResponse::ProjectNotFound => Err(ClusterError::project_not_found(project_id)),
            other => Err(ClusterError::Internal(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Writes a template version (validated by the caller).
    pub async fn put_template(
        &self,
        mut template: Template,
        write: TemplateWrite,
    ) -> Result<(Template, TemplateHead)> {
        let project_id = template.project_id.clone();
        self.get_project(&project_id).await?;
        let now = now_rfc3339();
        template.creation_date = now.clone();
        template.last_modified_date = now;
        let answer = self
            .write_meta(MetaCommand::Template(TemplateCommand::Put {
                template,
                write,
            }))
            .await?;
        Self::template_answer(answer, &project_id)
    }

    /// A template version (the active one when `version` is None).
    pub async fn get_template(
        &self,
        project_id: &str,
        template_type: TemplateType,
        name: &str,
        version: Option<u32>,
    ) -> Result<(Template, TemplateHead)> {
        self.project(project_id).await?;
        let head: TemplateHead = self
            .read_value(
                META_GROUP,
                template_head_key(project_id, template_type, name),
            )
            .await?
            .ok_or_else(|| not_found(template_type, name))?;
        let version = version.unwrap_or(head.active);
        let template: Template = self
            .read_value(
                META_GROUP,
                template_key(project_id, template_type, name, version),
            )
            .await?
            .ok_or_else(|| {
                ClusterError::NotFound(format!(
                    "version {version} of {} template {name:?} not found",
                    template_type.as_str()
                ))
            })?;
        Ok((template, head))
    }

    /// Makes `version` the active one.
    pub async fn set_active_template(
        &self,
        project_id: &str,
        template_type: TemplateType,
        name: &str,
        version: u32,
    ) -> Result<(Template, TemplateHead)> {
        self.project(project_id).await?;
        let answer = self
            .write_meta(MetaCommand::Template(TemplateCommand::SetActive {
                project_id: project_id.to_string(),
                template_type,
                name: name.to_string(),
                version,
            }))
            .await?;
        Self::template_answer(answer, project_id)
    }

    /// Deletes one version or all; answers how many were deleted.
    pub async fn delete_template(
        &self,
        project_id: &str,
        template_type: TemplateType,
        name: &str,
        version: Option<u32>,
    ) -> Result<u32> {
        self.project(project_id).await?;
        match self
            .write_meta(MetaCommand::Template(TemplateCommand::Delete {
                project_id: project_id.to_string(),
                template_type,
                name: name.to_string(),
                version,
            }))
            .await?
        {
            MetaResponse::TemplatesDeleted(count) => Ok(count),
            other => Self::template_answer(other, project_id).map(|_| 0),
        }
    }

    /// The active version of every template of a project, optionally of one type and with a
    /// name prefix.
    pub async fn list_templates(
        &self,
        project_id: &str,
        prefix: &str,
        template_type: Option<TemplateType>,
    ) -> Result<Vec<(Template, TemplateHead)>> {
        self.project(project_id).await?;
        let fields: Vec<&str> = match &template_type {
            Some(kind) => vec![project_id, kind.as_str()],
            None => vec![project_id],
        };
        let heads = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::TEMPLATE_HEAD, &fields),
            )
            .await?;
        let mut templates = Vec::new();
        for (key, value) in heads {
            let parts = keys::data_fields(&key);
            let (Some(kind), Some(name)) = (parts.get(1), parts.get(2)) else {
                continue;
            };
            let Some(kind) = TemplateType::parse(kind) else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let head: TemplateHead = codec::decode(&value).map_err(ClusterError::internal)?;
            if let Some(template) = self
                .read_value::<Template>(
                    META_GROUP,
                    template_key(project_id, kind, name, head.active),
                )
                .await?
            {
                templates.push((template, head));
            }
        }
        Ok(templates)
    }

    /// Every version of a template, oldest first.
    pub async fn template_versions(
        &self,
        project_id: &str,
        template_type: TemplateType,
        name: &str,
    ) -> Result<Vec<(Template, TemplateHead)>> {
        self.project(project_id).await?;
        let head: TemplateHead = self
            .read_value(
                META_GROUP,
                template_head_key(project_id, template_type, name),
            )
            .await?
            .ok_or_else(|| not_found(template_type, name))?;
        let prefix = keys::data_key(
            META_GROUP,
            tag::TEMPLATE,
            &[project_id, template_type.as_str(), name],
        );
        self.read_records(META_GROUP, prefix)
            .await?
            .into_iter()
            .map(|(_, value)| {
                codec::decode::<Template>(&value)
                    .map(|t| (t, head))
                    .map_err(ClusterError::internal)
            })
            .collect()
    }
}
