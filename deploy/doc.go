// Package deploy holds the deployment manifests (kubernetes/, compose.yaml); its test checks
// that they agree with the code: env names, probe paths and ports, grace periods, image names.
package deploy
