-- 0005: exactly one run per push. The pushes of each branch are numbered: deliveries of one push (the branch
-- head moving from `before_sha` to `after_sha`, redelivered or sent by a second webhook at once) share the
-- number of the branch's newest push; a push of the same commits after another one (a force-push back and
-- forth) gets the next number, hence its own orchestration. The job row is the claim: it is inserted
-- once per instance (INSERT ... ON CONFLICT DO NOTHING), and only the delivery that inserted it starts it.

CREATE TABLE branch_pushes (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    repository  text NOT NULL,  -- owner/name, lower-case
    branch      text NOT NULL,
    sequence    bigint NOT NULL,  -- the newest push's number on the branch, from 1
    before_sha  text NOT NULL,
    after_sha   text NOT NULL,
    pushed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, repository, branch)
);

ALTER TABLE branch_pushes ENABLE ROW LEVEL SECURITY;
ALTER TABLE branch_pushes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON branch_pushes USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON branch_pushes TO ironlayer_app;
