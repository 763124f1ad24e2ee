// A workload using the AWS SDK for Go v2 (as Debian packages it). Usage:
//
//	s3sdkv2 ENDPOINT BUCKET PREFIX
//
// Puts objects of several sizes, reads them back whole and in a range, HEADs and lists them
// (sizes and ETags must agree, the ETag of a single PUT being the MD5 of what was sent), copies
// one, uploads one in parts by hand and one with the SDK's upload manager (parts at once), and
// deletes them. Prints {"ok": true, "checks": n} as JSON, or the first mismatch and exits 1.
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

var checks = 0

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(1)
	}
	checks++
}

func must(err error, what string) {
	check(err == nil, "%s: %v", what, err)
}

func data(n int, seed int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte((i*7 + seed) % 251)
	}
	return out
}

func quotedMD5(b []byte) string {
	sum := md5.Sum(b)
	return "\"" + hex.EncodeToString(sum[:]) + "\""
}

func get(ctx context.Context, c *s3.Client, bucket, key string, rng *string) []byte {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: rng})
	must(err, "GetObject "+key)
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	must(err, "reading "+key)
	return body
}

func main() {
	endpoint, bucket, prefix := os.Args[1], os.Args[2], os.Args[3]
	ctx := context.Background()
	c := s3.New(s3.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("any", "any", ""),
		EndpointResolver: s3.EndpointResolverFromURL(endpoint),
		UsePathStyle:     true,
	})
	written := map[string][]byte{}
	for i, n := range []int{0, 1000, 3*65536 + 5, 5*1024*1024 + 1} {
		key := fmt.Sprintf("%s/put-%d", prefix, n)
		body := data(n, i)
		out, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &bucket, Key: &key, Body: bytes.NewReader(body), ContentLength: int64(n),
		})
		must(err, "PutObject "+key)
		check(aws.ToString(out.ETag) == quotedMD5(body), "PutObject %s ETag %s", key, aws.ToString(out.ETag))
		check(bytes.Equal(get(ctx, c, bucket, key, nil), body), "GetObject %s differs", key)
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		must(err, "HeadObject "+key)
		check(head.ContentLength == int64(n), "HeadObject %s size %d", key, head.ContentLength)
		check(aws.ToString(head.ETag) == quotedMD5(body), "HeadObject %s ETag %s", key, aws.ToString(head.ETag))
		written[key] = body
	}
	ranged := fmt.Sprintf("%s/put-%d", prefix, 3*65536+5)
	check(bytes.Equal(get(ctx, c, bucket, ranged, aws.String("bytes=65530-65600")), written[ranged][65530:65601]),
		"ranged GetObject differs")

	copied := prefix + "/copied"
	source := bucket + "/" + ranged
	_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &bucket, Key: &copied, CopySource: &source})
	must(err, "CopyObject")
	check(bytes.Equal(get(ctx, c, bucket, copied, nil), written[ranged]), "the copy differs")
	written[copied] = written[ranged]

	parts := prefix + "/parts"
	created, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &parts})
	must(err, "CreateMultipartUpload")
	pieces := [][]byte{data(5*1024*1024, 1), data(1024, 2)}
	var completed []types.CompletedPart
	for i, piece := range pieces {
		number := int32(i + 1)
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &bucket, Key: &parts, UploadId: created.UploadId, PartNumber: number,
			Body: bytes.NewReader(piece), ContentLength: int64(len(piece)),
		})
		must(err, "UploadPart")
		check(aws.ToString(up.ETag) == quotedMD5(piece), "UploadPart ETag %s", aws.ToString(up.ETag))
		completed = append(completed, types.CompletedPart{ETag: up.ETag, PartNumber: number})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &parts, UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	must(err, "CompleteMultipartUpload")
	whole := append(append([]byte{}, pieces[0]...), pieces[1]...)
	check(bytes.Equal(get(ctx, c, bucket, parts, nil), whole), "the multipart object differs")
	written[parts] = whole

	managed := prefix + "/managed"
	big := data(12*1024*1024+3, 3)
	uploader := manager.NewUploader(c, func(u *manager.Uploader) { u.PartSize = 5 * 1024 * 1024 })
	_, err = uploader.Upload(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &managed, Body: bytes.NewReader(big)})
	must(err, "manager Upload")
	check(bytes.Equal(get(ctx, c, bucket, managed, nil), big), "the managed upload differs")
	written[managed] = big

	listed, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix + "/")})
	must(err, "ListObjectsV2")
	check(len(listed.Contents) == len(written), "listed %d objects, wrote %d", len(listed.Contents), len(written))
	for _, obj := range listed.Contents {
		key := aws.ToString(obj.Key)
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		must(err, "HeadObject "+key)
		check(obj.Size == int64(len(written[key])) && obj.Size == head.ContentLength,
			"%s listed with size %d, HEAD %d, wrote %d", key, obj.Size, head.ContentLength, len(written[key]))
		check(aws.ToString(obj.ETag) == aws.ToString(head.ETag),
			"%s listed with ETag %s, HEAD %s", key, aws.ToString(obj.ETag), aws.ToString(head.ETag))
	}
	for key := range written {
		k := key
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &k})
		must(err, "DeleteObject "+key)
	}
	out, _ := json.Marshal(map[string]interface{}{"ok": true, "checks": checks})
	fmt.Println(string(out))
}
