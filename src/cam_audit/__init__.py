from cam_audit.errors import CamAuditError
