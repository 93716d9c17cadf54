// Package fleet is the machinery behind package adoption: the Lease each
// executor instance holds (LeaseHolder), the relabelling that moves a pod to
// a new owner (Relabel), and the sweeps that take over the settled pods of
// dead instances (Sweeper, with claim Leases). The executor runs them; hosts
// use package adoption. See package adoption for how they fit together.
package fleet
