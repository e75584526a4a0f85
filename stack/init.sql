-- Reference data for marketstream: the companies whose trades, news and social posts are ingested.
-- Shared by stack/stack.sh and docker-compose.yml (mounted into /docker-entrypoint-initdb.d).
CREATE TABLE IF NOT EXISTS companies_info (
    ticker        TEXT PRIMARY KEY CHECK (ticker ~ '^[A-Z][A-Z0-9.\-]{0,9}$'),
    company_name  TEXT NOT NULL,
    related_words TEXT[] NOT NULL DEFAULT '{}'
);

INSERT INTO companies_info (ticker, company_name, related_words) VALUES
    ('AAPL',  'Apple',              ARRAY['iPhone', 'Tim Cook', 'App Store']),
    ('MSFT',  'Microsoft',          ARRAY['Azure', 'Satya Nadella', 'Windows']),
    ('NVDA',  'Nvidia',             ARRAY['Jensen Huang', 'GPU', 'CUDA']),
    ('AMZN',  'Amazon',             ARRAY['AWS', 'Andy Jassy', 'Prime']),
    ('GOOGL', 'Alphabet',           ARRAY['Google', 'Sundar Pichai', 'YouTube']),
    ('META',  'Meta Platforms',     ARRAY['Facebook', 'Instagram', 'Mark Zuckerberg']),
    ('TSLA',  'Tesla',              ARRAY['Elon Musk', 'Cybertruck', 'Model Y']),
    ('AVGO',  'Broadcom',           ARRAY['Hock Tan', 'VMware']),
    ('BRK.B', 'Berkshire Hathaway', ARRAY['Warren Buffett', 'Greg Abel']),
    ('JPM',   'JPMorgan Chase',     ARRAY['Jamie Dimon', 'Chase Bank']),
    ('V',     'Visa',               ARRAY['Visa card', 'payments network']),
    ('MA',    'Mastercard',         ARRAY['Mastercard payments']),
    ('UNH',   'UnitedHealth Group', ARRAY['UnitedHealthcare', 'Optum']),
    ('XOM',   'Exxon Mobil',        ARRAY['ExxonMobil', 'Darren Woods']),
    ('LLY',   'Eli Lilly',          ARRAY['Mounjaro', 'Zepbound']),
    ('JNJ',   'Johnson & Johnson',  ARRAY['J&J', 'Janssen']),
    ('WMT',   'Walmart',            ARRAY['Doug McMillon', 'Sam''s Club']),
    ('PG',    'Procter & Gamble',   ARRAY['P&G', 'Tide', 'Gillette']),
    ('HD',    'Home Depot',         ARRAY['The Home Depot']),
    ('COST',  'Costco',             ARRAY['Costco Wholesale', 'Kirkland Signature']),
    ('KO',    'Coca-Cola',          ARRAY['Coke', 'Coca Cola']),
    ('PEP',   'PepsiCo',            ARRAY['Pepsi', 'Frito-Lay']),
    ('BAC',   'Bank of America',    ARRAY['BofA', 'Brian Moynihan']),
    ('NFLX',  'Netflix',            ARRAY['Netflix streaming', 'Ted Sarandos']),
    ('ADBE',  'Adobe',              ARRAY['Photoshop', 'Adobe Firefly']),
    ('CRM',   'Salesforce',         ARRAY['Marc Benioff', 'Slack']),
    ('ORCL',  'Oracle',             ARRAY['Larry Ellison', 'Oracle Cloud']),
    ('AMD',   'Advanced Micro Devices', ARRAY['AMD', 'Lisa Su', 'Ryzen']),
    ('INTC',  'Intel',              ARRAY['Intel chips', 'Intel Foundry']),
    ('DIS',   'Walt Disney',        ARRAY['Disney', 'Disney+', 'Bob Iger']),
    ('BA',    'Boeing',             ARRAY['Boeing 737', 'Kelly Ortberg']),
    ('CVX',   'Chevron',            ARRAY['Chevron oil', 'Mike Wirth']),
    ('MRK',   'Merck',              ARRAY['Keytruda', 'Merck & Co']),
    ('CSCO',  'Cisco Systems',      ARRAY['Cisco', 'Webex']),
    ('GS',    'Goldman Sachs',      ARRAY['David Solomon', 'Goldman'])
ON CONFLICT (ticker) DO NOTHING;
