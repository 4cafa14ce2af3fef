-- Rule-level approval settings: distinct approvers required, who may
-- approve, whether the owner may, and who has approved so far.
ALTER TABLE approvals ADD COLUMN required BIGINT NOT NULL DEFAULT 1;
ALTER TABLE approvals ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE approvals ADD COLUMN allow_owner BIGINT NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN approved_by TEXT NOT NULL DEFAULT '[]';
ALTER TABLE approvals ADD COLUMN approved_count BIGINT NOT NULL DEFAULT 0;
