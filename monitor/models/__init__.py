from monitor.models.alerts import (
    Alert, AlertRule, DeliveryAttempt, Heartbeat, MaintenanceWindow, Notification, Silence,
)
from monitor.models.channels import Channel
from monitor.models.clusters import Cluster, ConsumerGroup, Topic
from monitor.models.flow import FlowEdgeRollup
from monitor.models.events import Event, EventType, ExpectedSubscription, Finding, Service
from monitor.models.lag import FrameKind, GroupEvent, LagFrame, LagRollup, PollRun
from monitor.models.schemas import SchemaSubject, TopicSchemaId
from monitor.models.pathways import BusinessFlow, BusinessTransaction, Pathway, ProcessingCursor, TracePathway
from monitor.models.tokens import ApiToken

__all__ = [
    "Alert", "AlertRule", "ApiToken", "Channel", "Cluster", "ConsumerGroup", "DeliveryAttempt",
    "Event", "EventType", "ExpectedSubscription", "Finding", "FlowEdgeRollup", "FrameKind", "GroupEvent",
    "Heartbeat", "LagFrame", "LagRollup", "MaintenanceWindow", "Notification", "PollRun", "Service", "Silence",
    "Topic",
    "BusinessFlow", "BusinessTransaction", "Pathway", "ProcessingCursor", "TracePathway",
    "SchemaSubject", "TopicSchemaId",
]
