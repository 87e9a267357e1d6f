"""Pure library: TEE evidence formats, verification, policy, report-data binding, receipts."""
