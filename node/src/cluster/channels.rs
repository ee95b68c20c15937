//! Channel settings of projects (SPEC PRJ-3): one record per channel in the meta group,
//! read linearizably.

use super::{Cluster, ClusterError, Result};
use crate::domain::channel::{ChannelConfig, ChannelKind, ChannelSettings};
use crate::raft::META_GROUP;
use crate::raft::command::{ChannelCommand, MetaCommand, MetaResponse};
use crate::storage::{codec, keys, keys::tag};

impl Cluster {
    /// Every channel of a project; channels never configured are `None`.
    pub async fn get_channel_settings(&self, project_id: &str) -> Result<ChannelSettings> {
        self.project(project_id).await?;
        let records = self
            .read_records(
                META_GROUP,
                keys::data_key(META_GROUP, tag::CHANNEL, &[project_id]),
            )
            .await?;
        let mut settings = ChannelSettings::default();
        for (_, value) in records {
            settings
                .insert(codec::decode::<ChannelConfig>(&value).map_err(ClusterError::internal)?);
        }
        Ok(settings)
    }

    /// One channel of a project, when configured.
    pub async fn get_channel(
        &self,
        project_id: &str,
        channel: ChannelKind,
    ) -> Result<Option<ChannelConfig>> {
        self.project(project_id).await?;
        self.read_value(
            META_GROUP,
            crate::raft::state_machine::channel_key(project_id, channel),
        )
        .await
    }

    /// Replaces one channel's settings (validated by the caller); secrets left empty keep
    /// their stored values. Answers the stored settings, secrets included.
    pub async fn update_channel(
        &self,
        project_id: &str,
        settings: ChannelConfig,
    ) -> Result<ChannelConfig> {
        self.project(project_id).await?;
        match self
            .write_meta(MetaCommand::Channel(ChannelCommand::Put {
                project_id: project_id.to_string(),
                settings,
            }))
            .await?
        {
            MetaResponse::Channel(stored) => Ok(stored),
            other => Err(Self::channel_answer_error(other, project_id)),
        }
    }

    /// Removes one channel's settings; answers whether they existed.
    pub async fn delete_channel(&self, project_id: &str, channel: ChannelKind) -> Result<bool> {
        self.project(project_id).await?;
        match self
            .write_meta(MetaCommand::Channel(ChannelCommand::Delete {
                project_id: project_id.to_string(),
                channel,
            }))
            .await?
        {
            MetaResponse::ChannelDeleted(existed) => Ok(existed),
            other => Err(Self::channel_answer_error(other, project_id)),
        }
    }

    fn channel_answer_error(answer: MetaResponse, project_id: &str) -> ClusterError {
        match answer {
            MetaResponse::ProjectNotFound => ClusterError::project_not_found(project_id),
            other => ClusterError::Internal(format!("unexpected answer {other:?}")),
        }
    }
}
