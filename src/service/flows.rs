//! Task flows: a node comes due `waitingTime` seconds after the previous attempt was handed to
//! its route, decides (contract decision 12, [`decide_step`]) and sends the session's code
//! again on its channel, on another route (`channelCut` 0) or the same one (1).

use super::Service;
use super::delivery::Delivery;
use crate::domain::Channel;
use crate::domain::flow::{StepDecision, decide_step};
use crate::domain::phone::PhoneNumber;
use crate::providers::routing::RouteChoice;
use crate::store::{FlowFire, FlowFired, Job};

impl Service {
    pub(super) async fn flow_job(&self, job: Job) -> anyhow::Result<()> {
        let claim = job.claim();
        let due_ms = job.due_ms;
        let (Some(session_id), Some(step)) = (job.session_id.clone(), job.step) else {
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        };
        let ended = |why: &'static str| {
            self.metrics.flow_step(why);
            tracing::info!(
                session.id = %session_id,
                flow.step = step,
                flow.result = why,
                "flow ended"
            );
        };
        let Some((session, attempts)) = self.store.session_with_attempts(&session_id).await? else {
            ended("missing");
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        };
        let flow = match session.flow_id {
            Some(id) => self.store.get_flow(id).await?,
            None => None,
        };
        let Some((flow, node)) = flow.and_then(|f| {
            let node = *f.nodes.get(usize::try_from(step).ok()?)?;
            Some((f, node))
        }) else {
            // The flow was changed to fewer nodes since: nothing left to do.
            ended("flow_changed");
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        };
        let now = self.now_ms();
        let previous = attempts.iter().find(|a| Some(a.id) == job.attempt_id);
        let delivered = previous.is_some_and(|a| a.delivered());
        if let StepDecision::End(why) = decide_step(&node, &session.state(), now, delivered) {
            ended(why.as_str());
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        }
        let channel = Channel::from(node.channel);
        let last_route = attempts
            .iter()
            .rev()
            .find(|a| a.channel == channel.as_str())
            .map(|a| a.route.as_str());
        let choice = match (node.channel_cut, last_route) {
            (_, None) => RouteChoice::First,
            (0, Some(r)) => RouteChoice::Other(r),
            (_, Some(r)) => RouteChoice::Same(r),
        };
        let Some(code) = self.session_code(&session)? else {
            ended("closed");
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        };
        let phone = PhoneNumber::parse_international(&session.phone)
            .map_err(|e| anyhow::anyhow!("stored number unreadable: {e}"))?;
        let template = match session.template_id {
            Some(id) => self.store.get_template(id).await?,
            None => None,
        };
        let Some((target, attempt)) =
            self.describe_attempt(channel, phone, template, &code, Some(step + 1), choice)
        else {
            ended("no_route");
            self.finish(self.done(claim, Vec::new())).await;
            return Ok(());
        };
        let route_name = attempt.route.clone();
        let verification_id = previous
            .map(|a| a.verification_id.clone())
            .unwrap_or_else(|| session.id.clone());
        let fired = self
            .store
            .fire_flow_step(&FlowFire {
                job: claim,
                session_id: session.id.clone(),
                verification_id: verification_id.clone(),
                attempt,
                now_ms: now,
                claim: self.new_claim(now),
            })
            .await?;
        match fired {
            FlowFired::Created {
                attempt_id, job, ..
            } => {
                self.metrics.flow_step("sent");
                self.metrics
                    .attempt(channel.as_str(), crate::store::gateway::SENDING);
                tracing::info!(
                    session.id = %session.id,
                    flow.id = flow.flow_id,
                    flow.step = step,
                    attempt.id = attempt_id,
                    channel = %channel,
                    route.name = %route_name,
                    flow.late_ms = now - due_ms,
                    "flow node fired"
                );
                self.deliver(Delivery {
                    job,
                    attempt_id,
                    verification_id,
                    session_id: session.id,
                    next_step: Some((flow.flow_id, step + 1)),
                    code,
                    target,
                })
                .await;
            }
            FlowFired::Closed => ended("closed"),
            FlowFired::Lost => {
                tracing::warn!(session.id = %session.id, flow.step = step, "flow job claim lapsed")
            }
        }
        Ok(())
    }
}
