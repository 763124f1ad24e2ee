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
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"workload"
)

func get(ctx context.Context, c *s3.Client, bucket, key string, rng *string) []byte {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: rng})
	workload.Must(err, "GetObject "+key)
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	workload.Must(err, "reading "+key)
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
		body := workload.Data(n, i)
		out, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &bucket, Key: &key, Body: bytes.NewReader(body), ContentLength: int64(n),
		})
		workload.Must(err, "PutObject "+key)
		workload.Check(aws.ToString(out.ETag) == workload.QuotedMD5(body), "PutObject %s ETag %s", key, aws.ToString(out.ETag))
		workload.Check(bytes.Equal(get(ctx, c, bucket, key, nil), body), "GetObject %s differs", key)
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		workload.Must(err, "HeadObject "+key)
		workload.Check(head.ContentLength == int64(n), "HeadObject %s size %d", key, head.ContentLength)
		workload.Check(aws.ToString(head.ETag) == workload.QuotedMD5(body), "HeadObject %s ETag %s", key, aws.ToString(head.ETag))
		written[key] = body
	}
	ranged := fmt.Sprintf("%s/put-%d", prefix, 3*65536+5)
	workload.Check(bytes.Equal(get(ctx, c, bucket, ranged, aws.String("bytes=65530-65600")), written[ranged][65530:65601]),
		"ranged GetObject differs")

	copied := prefix + "/copied"
	source := bucket + "/" + ranged
	_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &bucket, Key: &copied, CopySource: &source})
	workload.Must(err, "CopyObject")
	workload.Check(bytes.Equal(get(ctx, c, bucket, copied, nil), written[ranged]), "the copy differs")
	written[copied] = written[ranged]

	parts := prefix + "/parts"
	created, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &parts})
	workload.Must(err, "CreateMultipartUpload")
	pieces := [][]byte{workload.Data(5*1024*1024, 1), workload.Data(1024, 2)}
	var completed []types.CompletedPart
	for i, piece := range pieces {
		number := int32(i + 1)
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &bucket, Key: &parts, UploadId: created.UploadId, PartNumber: number,
			Body: bytes.NewReader(piece), ContentLength: int64(len(piece)),
		})
		workload.Must(err, "UploadPart")
		workload.Check(aws.ToString(up.ETag) == workload.QuotedMD5(piece), "UploadPart ETag %s", aws.ToString(up.ETag))
		completed = append(completed, types.CompletedPart{ETag: up.ETag, PartNumber: number})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &parts, UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	workload.Must(err, "CompleteMultipartUpload")
	whole := append(append([]byte{}, pieces[0]...), pieces[1]...)
	workload.Check(bytes.Equal(get(ctx, c, bucket, parts, nil), whole), "the multipart object differs")
	written[parts] = whole

	managed := prefix + "/managed"
	big := workload.Data(12*1024*1024+3, 3)
	uploader := manager.NewUploader(c, func(u *manager.Uploader) { u.PartSize = 5 * 1024 * 1024 })
	_, err = uploader.Upload(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &managed, Body: bytes.NewReader(big)})
	workload.Must(err, "manager Upload")
	workload.Check(bytes.Equal(get(ctx, c, bucket, managed, nil), big), "the managed upload differs")
	written[managed] = big

	listed, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix + "/")})
	workload.Must(err, "ListObjectsV2")
	workload.Check(len(listed.Contents) == len(written), "listed %d objects, wrote %d", len(listed.Contents), len(written))
	for _, obj := range listed.Contents {
		key := aws.ToString(obj.Key)
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		workload.Must(err, "HeadObject "+key)
		workload.Check(obj.Size == int64(len(written[key])) && obj.Size == head.ContentLength,
			"%s listed with size %d, HEAD %d, wrote %d", key, obj.Size, head.ContentLength, len(written[key]))
		workload.Check(aws.ToString(obj.ETag) == aws.ToString(head.ETag),
			"%s listed with ETag %s, HEAD %s", key, aws.ToString(obj.ETag), aws.ToString(head.ETag))
	}
	for key := range written {
		k := key
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &k})
		workload.Must(err, "DeleteObject "+key)
	}
	workload.Done()
}
