// Package deploy holds the deployment manifests (kubernetes/, the kubernetes-dry-run/ overlay,
// compose.yaml); its test checks that they agree with the code: env names, probe paths and
// ports, grace periods, image names, alert metrics, and the NACK resources against what the
// daemon provisions.
package deploy
