"""The data model: one module per aggregate."""
from intercity.models.user import User, ROLES
from intercity.models.server import Server, DeployKey
from intercity.models.app import App, EnvVar, Domain
from intercity.models.operation import Operation, CommandRun
from intercity.models.audit import AuditEntry, AuditCheckpoint
from intercity.models.notification import (NotificationPreference, NotificationTarget, NotifyCursor, NotifyThrottle,
                                           OutboxMessage)
from intercity.models.account import Invitation, RecoveryCode, UserSession
from intercity.models.setting import PanelSetting
from intercity.models.applied import AppliedValue
from intercity.models.service_backup import ServiceBackup
from intercity.models.tls import TlsReading, UploadedCertificate
from intercity.models.build import AppBuild, AppDeployRead

__all__ = [
    "User", "ROLES", "Server", "DeployKey", "App", "EnvVar", "Domain",
    "Operation", "CommandRun", "AuditEntry", "AuditCheckpoint",
    "NotificationPreference", "NotificationTarget", "NotifyCursor", "NotifyThrottle", "OutboxMessage",
    "Invitation", "UserSession", "RecoveryCode", "PanelSetting", "AppliedValue", "ServiceBackup",
    "TlsReading", "UploadedCertificate", "AppBuild", "AppDeployRead",
]
