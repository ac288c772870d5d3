// repclass ingest, one sample per task (the scatter half of ingest -> combine).
// The repertoire file is matched to meta.id by its name or stem (s01 <-> s01.tsv.gz).
process REPCLASS_INGEST {
    tag "${meta.id}"
    label 'process_single'

    // repclass must be on PATH: set process.conda / process.container in your config, or use a module.

    input:
    tuple val(meta), path(repertoire)
    path sheet

    output:
    tuple val(meta), path("*.store"), emit: store
    path "versions.yml"             , emit: versions

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

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        repclass: \$(repclass --version)
    END_VERSIONS
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.store/repertoires
    touch ${prefix}.store/manifest.json ${prefix}.store/samples.tsv ${prefix}.store/repertoires/${prefix}.parquet

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        repclass: \$(repclass --version)
    END_VERSIONS
    """
}
