// Validates the chart's custom resources (ServiceMonitor, PrometheusRule) and, as a second
// opinion, its core objects against the kubernetes-models schemas. Reads a JSON array of
// rendered objects from the file named on the command line; exits 1 on the first invalid one.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
};

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const object of objects) {
  const key = `${object.apiVersion}/${object.kind}`;
  const Model = models[key];
  if (!Model) {
    console.error(`no CRD model for ${key}`);
    failed += 1;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${key} ${object.metadata.name}`);
  } catch (error) {
    console.error(`INVALID ${key} ${object.metadata.name}: ${error.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
