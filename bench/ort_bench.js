// ort_bench.js - ONNX Runtime (npm onnxruntime-node) timing for bench/peers.py.
//
//   NODE_PATH=DIR/node_modules node ort_bench.js MODEL.onnx BATCH SIZE THREADS WARMUP ITERS
//
// Runs WARMUP then ITERS forwards of a [BATCH, 3, SIZE, SIZE] float32 input of
// random values (input "data") on the CPU provider, optimisation level all,
// INTRA-op threads THREADS, and prints one JSON line: ms_per_image (median),
// peak_rss_mb (maxRSS of this process), cpu_ms_per_image (user + system over
// the timed runs).
'use strict';
const ort = require('onnxruntime-node');

async function main() {
	const [model, b, size, threads, warmup, iters] = process.argv.slice(2);
	const batch = Number(b), n = Number(iters);
	const sess = await ort.InferenceSession.create(model, {
		intraOpNumThreads: Number(threads),
		interOpNumThreads: 1,
		executionMode: 'sequential',
		graphOptimizationLevel: 'all',
	});
	const len = batch * 3 * Number(size) * Number(size);
	const data = new Float32Array(len);
	for (let i = 0; i < len; i++)
		data[i] = Math.random() * 2 - 1;
	const feeds = {data: new ort.Tensor('float32', data, [batch, 3, Number(size), Number(size)])};
	for (let i = 0; i < Number(warmup); i++)
		await sess.run(feeds);
	const ts = [];
	const c0 = process.cpuUsage();
	for (let i = 0; i < n; i++) {
		const t = process.hrtime.bigint();
		await sess.run(feeds);
		ts.push(Number(process.hrtime.bigint() - t) / 1e6);
	}
	const c = process.cpuUsage(c0);
	ts.sort((x, y) => x - y);
	const med = n % 2 ? ts[(n - 1) / 2] : (ts[n / 2 - 1] + ts[n / 2]) / 2;
	console.log(JSON.stringify({
		ms_per_image: med / batch,
		peak_rss_mb: process.resourceUsage().maxRSS / 1024,
		cpu_ms_per_image: (c.user + c.system) / 1e3 / (n * batch),
	}));
}

main().catch((e) => {
	console.error(String(e && e.message ? e.message : e));
	process.exit(1);
});
