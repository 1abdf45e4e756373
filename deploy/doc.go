// Package deploy holds the deployment manifests (kubernetes/, the kubernetes-dry-run/ overlay,
// the kubernetes-cluster/ overlay with the NATS chart's values for a 3-server JetStream cluster,
// compose.yaml); its tests check that they agree with the code: env names, probe paths and
// ports, grace periods, image names, alert metrics, the NACK resources against what the daemon
// provisions, and the cluster overlay's replicas, budget, spread and NATS_URL against the NATS
// cluster's size.
package deploy
