// repclass combine: per-sample stores (REPCLASS_INGEST) -> one store (the gather half).
// The parts are copied with their checksums checked; the raw files are not read again.
process REPCLASS_COMBINE {
    tag "${meta.id}"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    container 'docker.io/library/repclass:0.1.0-cpu'

    input:
    tuple val(meta), path(parts, stageAs: 'parts/*')

    output:
    tuple val(meta), path("*.store"), emit: store
    // versions, gathered by the workflow from the `versions` topic: (process, tool, version)
    tuple val("${task.process}"), val('repclass'), eval('repclass --version'), emit: versions_repclass, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    repclass combine \\
        ${parts} \\
        --out ${prefix}.store \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.store/repertoires
    touch ${prefix}.store/manifest.json ${prefix}.store/samples.tsv
    """
}
