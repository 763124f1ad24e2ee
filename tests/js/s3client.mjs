// A workload using the AWS SDK for JavaScript v3. Usage:
//   node s3client.mjs ENDPOINT BUCKET KEY SIZE
// Uploads SIZE bytes (a fixed pattern) as a stream, which the SDK sends aws-chunked with a
// trailing CRC32 checksum, reads it back and prints {"equal": bool, "length": n} as JSON.
// Its keys are WORKLOAD_ACCESS_KEY_ID / WORKLOAD_SECRET_ACCESS_KEY, or made up.
import { S3Client, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
import { Readable } from "node:stream";

const [, , endpoint, bucket, key, size] = process.argv;
const n = Number(size);
const data = Buffer.alloc(n);
for (let i = 0; i < n; i++) data[i] = (i * 7) % 251;
const client = new S3Client({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: {
    accessKeyId: process.env.WORKLOAD_ACCESS_KEY_ID ?? "any",
    secretAccessKey: process.env.WORKLOAD_SECRET_ACCESS_KEY ?? "any",
  },
});
const pieces = [];
for (let i = 0; i < n; i += 100000) pieces.push(data.subarray(i, i + 100000));
await client.send(
  new PutObjectCommand({ Bucket: bucket, Key: key, Body: Readable.from(pieces), ContentLength: n }),
);
const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
const back = Buffer.from(await got.Body.transformToByteArray());
console.log(JSON.stringify({ equal: Buffer.compare(back, data) === 0, length: back.length }));
