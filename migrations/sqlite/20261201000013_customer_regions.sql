-- Each customer's region and every region it lies in (`["kr", "kr-seoul"]`), written at intake
-- from `domain::region_ancestry`: an incident's audience is then found by membership, and how
-- regions nest is known in one place, not again in SQL.
ALTER TABLE customers ADD COLUMN regions TEXT;

-- Customers written before this migration: every prefix of their region that ends before a
-- dash, and the region itself.
WITH RECURSIVE cut(id, region, pos) AS (
    SELECT id, region, 0 FROM customers WHERE region IS NOT NULL
    UNION ALL
    SELECT id, region, pos + instr(substr(region, pos + 1), '-')
      FROM cut WHERE instr(substr(region, pos + 1), '-') > 0
),
ancestry(id, regions) AS (
    SELECT id, json_group_array(CASE WHEN pos = 0 THEN region ELSE substr(region, 1, pos - 1) END)
      FROM cut GROUP BY id
)
UPDATE customers SET regions = ancestry.regions FROM ancestry WHERE ancestry.id = customers.id;
