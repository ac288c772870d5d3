#!/usr/bin/env nextflow
/*
 * repclass example workflow: the whole job on a folder of repertoires and a sample sheet.
 *
 *   REPCLASS_INGEST   one task per sample (scatter)
 *   REPCLASS_COMBINE  the per-sample stores -> cohort.store (gather)
 *   REPCLASS_TRAIN    one model, or one task per fold (--folds K: fold_1 ... fold_K)
 *   REPCLASS_PREDICT  every model on the combined store (--attention N)
 *   REPCLASS_MOTIFS   every model on the combined store
 *
 *   nextflow run workflows/nextflow/main.nf --sheet samples.tsv --repertoires reps/ \
 *       --target status --outdir results [--folds 5] [-profile docker|singularity|conda[,gpu]]
 *
 * Parameters and resources: nextflow.config. See docs/pipelines.md.
 */
include { REPCLASS_INGEST  } from './modules/local/repclass/ingest/main'
include { REPCLASS_COMBINE } from './modules/local/repclass/combine/main'
include { REPCLASS_TRAIN   } from './modules/local/repclass/train/main'
include { REPCLASS_PREDICT } from './modules/local/repclass/predict/main'
include { REPCLASS_MOTIFS  } from './modules/local/repclass/motifs/main'

// s01.tsv.gz -> s01: the same matching of files to sample ids as `repclass ingest`.
def fileStem(String name) {
    def suffixes = ['.gz', '.gzip', '.zst', '.zstd', '.tsv', '.csv', '.txt', '.tab', '.airr']
    def stem = name
    def changed = true
    while (changed) {
        changed = false
        for (suffix in suffixes) {
            if (stem.toLowerCase().endsWith(suffix) && stem.length() > suffix.length()) {
                stem = stem.substring(0, stem.length() - suffix.length())
                changed = true
            }
        }
    }
    return stem
}

workflow {
    if (!params.sheet || !params.repertoires || !params.target) {
        error "Give --sheet (sample sheet), --repertoires (folder of repertoire files) and --target (label column)"
    }
    if ((params.folds as int) == 2 || (params.folds as int) < 0) {
        error "--folds must be 0 (one model) or at least 3 (test, validation, training), got ${params.folds}"
    }
    def sheet = file(params.sheet, checkIfExists: true)
    def header = sheet.withReader { it.readLine() } ?: ''
    def separator = header.count('\t') >= header.count(',') ? '\t' : ','

    // [meta, repertoire file] per sheet row, checked before any task starts; files in the folder
    // that no row names are ignored
    def rows = sheet.splitCsv(header: true, sep: separator)
    if (!rows || !rows[0].containsKey(params.id_column)) {
        error "${params.sheet}: no rows, or no id column '${params.id_column}' (set --id_column)"
    }
    def files = [:]
    file(params.repertoires, checkIfExists: true).listFiles().sort().each { f ->
        if (f.isFile() && !f.name.startsWith('.')) {
            files.putIfAbsent(f.name, f)
            files.putIfAbsent(fileStem(f.name), f)
        }
    }
    def ids = rows.collect { row -> row[params.id_column]?.trim() }.findAll { it }
    def missing = ids.findAll { id -> !files[id] }
    if (missing) {
        error "No repertoire file for sample(s) ${missing.join(', ')} in ${params.repertoires} (files are matched to ids by name or stem, e.g. ${missing[0]}.tsv.gz)"
    }
    def ch_samples = Channel.fromList(ids.collect { id -> [[id: id], files[id]] })

    // scatter, then gather (sorted, so that -resume sees the same task inputs)
    REPCLASS_INGEST(ch_samples, sheet)
    def ch_parts = REPCLASS_INGEST.out.store
        .map { meta, store -> store }
        .collect(sort: true)
        .map { stores -> [[id: 'cohort'], stores] }
    REPCLASS_COMBINE(ch_parts)
    def ch_store = REPCLASS_COMBINE.out.store

    // one training task per fold (or one model)
    def folds = params.folds as int
    def ch_folds = folds >= 3 ? Channel.of(1..folds) : Channel.of(0)
    def ch_train = ch_folds
        .combine(ch_store)
        .map { fold, meta, store ->
            [meta + [id: fold ? "fold_${fold}".toString() : 'model', fold: fold, folds: folds], store]
        }
    REPCLASS_TRAIN(ch_train, params.target)

    // every model scores, and is explained on, the combined store
    def ch_scoring = REPCLASS_TRAIN.out.model.combine(ch_store.map { meta, store -> store })
    REPCLASS_PREDICT(ch_scoring)
    REPCLASS_MOTIFS(ch_scoring)

    // software versions: every module emits (process, tool, version) tuples on the `versions`
    // topic (repclass; torch and the device for train, predict and motifs, whose results depend
    // on them). One YAML file: process -> tool -> version(s), distinct values joined by ', '.
    channel.topic('versions')
        .unique()
        .collect(flat: false)
        .map { rows ->
            rows.groupBy { row -> row[0].tokenize(':').last() }.sort().collect { process, tools ->
                def lines = tools.groupBy { row -> row[1] }.sort().collect { tool, values ->
                    "    ${tool}: ${values.collect { row -> row[2] }.unique().sort().join(', ')}"
                }
                "${process}:\n" + lines.join('\n')
            }.join('\n') + '\n'
        }
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info")
}
