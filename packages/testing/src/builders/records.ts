// Record-level builders (ServicePort, Endpoint, ChangeSet) live beside the model in core, whose
// own tests use them too; offered here with the object builders.

export { changeSetRecord, endpointRecord, servicePortRecord } from '@kube-proxy-ts/core/fixtures';
