package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"

	"github.com/distribution/reference"
)

// Images are never pulled: the container runs the host's programs. The
// reference is still checked the way the kubelet and a registry would, so
// that image failures can be tested:
//
//   - a reference that does not parse gives InvalidImageName (no retry
//     helps);
//   - a repository matching --image-pull-failure-regexp (by default, one
//     containing "does-not-exist") gives ErrImagePull, then ImagePullBackOff,
//     again and again with a doubling delay, as a registry that does not
//     have it would.
type imageCheck struct {
	ref     string // normalized reference, e.g. docker.io/library/busybox:1.36
	id      string // a made-up digest reference, stable for ref
	invalid string // message for InvalidImageName
	pullErr string // message for ErrImagePull
}

func checkImage(image string, pullFailure *regexp.Regexp) imageCheck {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return imageCheck{ref: image, invalid: fmt.Sprintf("Failed to apply default image tag %q: couldn't parse image name %q: %v", image, image, err)}
	}
	named = reference.TagNameOnly(named)
	c := imageCheck{ref: named.String()}
	if pullFailure != nil && pullFailure.MatchString(named.Name()) {
		c.pullErr = fmt.Sprintf("Failed to pull image %q: failed to pull and unpack image %q: failed to resolve reference %q: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed", image, c.ref, c.ref)
		return c
	}
	sum := sha256.Sum256([]byte(c.ref))
	c.id = named.Name() + "@sha256:" + hex.EncodeToString(sum[:])
	return c
}
