// repclass predict: score the repertoires of a store with a trained model.
// task.ext.args "--attention N" also writes each repertoire's top-N sequences by attention.
process REPCLASS_PREDICT {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(model), path(store)

    output:
    tuple val(meta), path("*.predictions.tsv")           , emit: predictions
    tuple val(meta), path("*.predictions.attention.tsv") , emit: attention, optional: true
    tuple val(meta), path("*.predictions.metrics.json")  , emit: metrics  , optional: true
    path "versions.yml"                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    repclass predict \\
        ${model} \\
        ${store} \\
        --out ${prefix}.predictions.tsv \\
        --device ${device} \\
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
    touch ${prefix}.predictions.tsv ${prefix}.predictions.attention.tsv ${prefix}.predictions.metrics.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        repclass: \$(repclass --version)
    END_VERSIONS
    """
}
