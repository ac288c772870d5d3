// repclass ingest, one sample per task (the scatter half of ingest -> combine).
// The repertoire file is matched to meta.id by its name or stem (s01 <-> s01.tsv.gz).
process REPCLASS_INGEST {
    tag "${meta.id}"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    container 'docker.io/library/repclass:0.1.0-cpu'

    input:
    tuple val(meta), path(repertoire)
    path sheet

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
    repclass ingest \\
        ${sheet} \\
        ${repertoire} \\
        --sample '${meta.id}' \\
        --out ${prefix}.store \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.store/repertoires
    touch ${prefix}.store/manifest.json ${prefix}.store/samples.tsv ${prefix}.store/repertoires/${prefix}.parquet
    """
}
